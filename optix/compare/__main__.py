"""``python -m optix.compare``: see :mod:`optix.compare._cli`."""

import sys

from optix.compare._cli import main

if __name__ == "__main__":  # importing the module (pkgutil, doc tools) must not run the tool
    sys.exit(main())
