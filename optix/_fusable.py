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
    """
    try:
        _ELEMENTWISE.add(tx.update)
    except TypeError:  # an update that cannot be weakly referenced stays unmarked
        pass
    return tx


def is_elementwise(tx: Any) -> bool:
    """Whether ``tx`` was declared elementwise with :func:`mark_elementwise`.
    """
    try:
        return getattr(tx, "update", None) in _ELEMENTWISE
    except TypeError:
        return False
