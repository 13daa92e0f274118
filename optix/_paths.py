"""Readable paths into pytrees, path patterns, and label or mask trees resolved against params.

A path is the ``/``-joined list of dict keys, attribute names (NamedTuple fields, dataclass and
equinox fields) and sequence indices from the root to a node, for example ``"encoder/0/kernel"``.

A pattern is a path whose segments may hold shell wildcards (``*``, ``?``, ``[...]``) matched
within one segment, and ``**``, which matches any number of segments (zero included). A pattern
matches a leaf when it matches the leaf's whole path or one of its ancestors, so ``"encoder"``
and ``"encoder/**"`` both match every leaf under ``encoder``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
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


def leaf_paths(tree: Any) -> list[str]:
    """The path of every leaf of ``tree``, in flattening order."""
    return [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _match(segments: tuple[str, ...], target: tuple[str, ...]) -> bool:
    """Whether the pattern ``segments`` matches all of ``target`` (``**`` spans segments)."""
    if not segments:
        return not target
    head, rest = segments[0], segments[1:]
    if head == "**":
        return any(_match(rest, target[i:]) for i in range(len(target) + 1))
    return bool(target) and fnmatch.fnmatchcase(target[0], head) and _match(rest, target[1:])


def matches(pattern: str, path: tuple[str, ...] | str) -> bool:
    """Whether ``pattern`` matches the leaf at ``path`` or one of its ancestors.

    Example:
      >>> from optix._paths import matches
      >>> matches("**/bias", "encoder/0/bias"), matches("encoder", "encoder/0/bias")
      (True, True)
      >>> matches("*/bias", "encoder/0/bias")
      False
    """
    target = tuple(path.split("/")) if isinstance(path, str) else tuple(path)
    segments = tuple(s for s in pattern.split("/") if s)
    return any(_match(segments, target[:n]) for n in range(len(target), -1, -1))


def address_matches(address: tuple[str, ...], full: tuple[str, ...]) -> bool:
    """Whether a short ``address`` names the node at path ``full``: its last part is ``full``'s
    last part and its other parts appear in ``full`` in the same order (``"adam/mu"`` names
    ``"adam/0/mu"``)."""
    if not address or not full or address[-1] != full[-1]:
        return False
    it = iter(full[:-1])
    return all(part in it for part in address[:-1])


def is_function(spec: Any) -> bool:
    """True for a plain function; False for any pytree, even a callable one (an equinox module)."""
    return callable(spec) and jax.tree_util.treedef_is_leaf(jax.tree.structure(spec))


def from_patterns(patterns: Mapping[str, Any], params: Any, what: str) -> Any:
    """A tree shaped like ``params`` holding, for each leaf, the value of the first matching
    pattern. A leaf no pattern matches is an error that names its path."""

    def value(path, _):
        leaf = parts(path)
        for pattern, v in patterns.items():
            if matches(pattern, leaf):
                return v
        raise ValueError(
            f"{what}: no pattern matches the leaf '{'/'.join(leaf) or '<root>'}' (patterns: "
            f"{list(patterns)}); add a catch-all such as '**'"
        )

    return jax.tree_util.tree_map_with_path(value, params)


def _is_none(x: Any) -> bool:
    return x is None


def _is_pattern_dict(spec: Any, tree: Any) -> bool:
    """A dict of path patterns: string keys and leaf values (labels or flags), without the
    structure of ``tree``. A nested dict is a tree of the wrong structure, whatever its keys."""
    return (
        isinstance(spec, Mapping)
        and jax.tree.structure(spec) != jax.tree.structure(tree)
        and all(isinstance(k, str) for k in spec)
        and all(jax.tree_util.treedef_is_leaf(jax.tree.structure(v)) for v in spec.values())
    )


def resolve_leaves(
    spec: Any, tree: Any, what: str, *, is_tree: bool | None = None, default: Any = None
) -> list:
    """The value ``spec`` gives each leaf of ``tree``, in flattening order.

    ``spec`` may be a tree with the structure of ``tree``; a tree written for the full params of
    which ``tree`` is a masked view (``None`` where leaves were masked out); a function
    ``tree -> such a tree``; or a dict of path patterns (first match wins; ``default``, when not
    None, is the value of a leaf no pattern matches, which is otherwise an error naming its path).
    A callable pytree, such as an equinox module, is a tree, never a function; ``is_tree=True``
    says so explicitly and ``is_tree=False`` forces a call.
    """
    from optix import _validate

    if is_tree is False or (is_tree is None and is_function(spec)):
        spec = spec(tree)
    full = jax.tree.structure(tree, is_leaf=_is_none)
    if full != jax.tree.structure(tree) and jax.tree.structure(spec) == full:
        pairs = zip(full.flatten_up_to(spec), full.flatten_up_to(tree), strict=True)
        return [value for value, leaf in pairs if leaf is not None]
    if is_tree is not True and _is_pattern_dict(spec, tree):
        patterns = dict(spec)
        if default is not None:
            patterns.setdefault("**", default)
        return jax.tree.leaves(from_patterns(patterns, tree, what))
    _validate.check_same_structure(spec, tree, what, "params")
    return jax.tree.leaves(spec)


def resolve(spec: Any, tree: Any, what: str, *, is_tree: bool | None = None) -> Any:
    """Like :func:`resolve_leaves`, as a tree with the structure of ``tree``."""
    return jax.tree.unflatten(
        jax.tree.structure(tree), resolve_leaves(spec, tree, what, is_tree=is_tree)
    )
