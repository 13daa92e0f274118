"""Which transforms are elementwise, so that :func:`optix.fuse` may run them on packed buffers.

A transform is *elementwise* when running it on a few flat buffers that hold every leaf end to
end (see :func:`optix.pack`) gives, element for element, the result of running it leaf by leaf.
That holds for math that treats each element on its own given scalar hyperparameters (Adam,
momentum, sign, scaling) and for reductions that ignore leaf boundaries (the global norm of
:func:`optix.clip_by_global_norm`). It fails for per-leaf statistics (trust ratios, per-leaf
norms), shape-dependent math (factored moments, matrix preconditioners), path-dependent wrappers
(labels and masks), and per-leaf random keys.

The marker is kept on the transform's ``update`` function in a weak set, so the transform stays a
plain ``GradientTransformation`` and the mark disappears with it.
"""

from __future__ import annotations

import weakref
from typing import Any

from optix._base import GradientTransformation

_ELEMENTWISE: weakref.WeakSet = weakref.WeakSet()


def mark_elementwise(tx: GradientTransformation) -> GradientTransformation:
    """Declare ``tx`` elementwise (see the module docstring) and return it unchanged.

    Example:
      >>> import optix
      >>> from optix._fusable import is_elementwise, mark_elementwise
      >>> tx = mark_elementwise(optix.identity())
      >>> is_elementwise(tx)
      True
    """
    try:
        _ELEMENTWISE.add(tx.update)
    except TypeError:  # an update that cannot be weakly referenced stays unmarked
        pass
    return tx


def is_elementwise(tx: Any) -> bool:
    """Whether ``tx`` was declared elementwise with :func:`mark_elementwise`.

    Example:
      >>> import optix
      >>> from optix._fusable import is_elementwise
      >>> is_elementwise(optix.adam(1e-3)), is_elementwise(optix.noisy_sgd(0.1))
      (True, False)
    """
    try:
        return getattr(tx, "update", None) in _ELEMENTWISE
    except TypeError:
        return False
