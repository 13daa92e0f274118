"""A JAX key path as text: ``encoder/0/kernel``.

The lowest piece of path handling: :mod:`optix._paths` (patterns and specs), :mod:`optix._pack`
and :mod:`optix._validate` all name leaves this way in their messages, so it imports nothing
from optix.
"""

from __future__ import annotations

from typing import Any

import jax


def key_str(key: Any) -> str:
    """One path component as text."""
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(getattr(key, "key", getattr(key, "name", key)))


def parts(path: tuple) -> tuple[str, ...]:
    """A JAX key path as a tuple of strings."""
    return tuple(key_str(k) for k in path)


def path_str(path: tuple) -> str:
    """A JAX key path as ``a/b/0``; ``<root>`` for the root itself."""
    return "/".join(parts(path)) or "<root>"
