"""Readable paths into pytrees, path patterns, and label or mask specs resolved against params.

A path is the ``/``-joined list of dict keys, attribute names (NamedTuple fields, dataclass and
equinox fields) and sequence indices from the root to a leaf, for example ``"encoder/0/kernel"``.
A flax nnx ``Variable`` adds no segment: the array of ``nnx.Param`` ``layers/0/bias`` has the
path ``layers/0/bias`` whether the tree holds the ``Param`` (``nnx.Optimizer``'s ``init``) or
the bare array (its ``update``). The leaves of a :class:`optix.Packed` have the paths of the
tree that was packed.

A pattern is a path whose segments may hold shell wildcards (``*``, ``?``, ``[...]``) matched
within one segment, and ``**``, which matches any number of segments (zero included). A pattern
matches a leaf when it matches the leaf's whole path or one of its ancestors, so ``"encoder"``
and ``"encoder/**"`` both match every leaf under ``encoder``.

A mask or label *spec* is read in exactly one way:

- a function (a callable that is not a pytree) is called on the params and its result read;
- a dict with string keys and leaf values (bools or labels) where some key contains ``*``,
  ``?``, ``[`` or ``/`` is a dict of patterns: first match wins, and every pattern must take at
  least one leaf (a trailing ``"**"``, the catch-all, may take none);
- anything else is a tree that mirrors the params down to some depth (a *prefix*, as in optax):
  a value at a node applies to every leaf below it, so ``{"encoder": False, "head": {"w": True,
  "b": False}}`` fits ``{"encoder": {...}, "head": {"w": ..., "b": ...}}``.

Where a fallback exists (:func:`optix.freeze`: trainable; Muon's labels: the ``ndim`` rule),
a leaf no pattern matches takes it, and a tree may leave keys out. A pattern that takes no leaf
is always an error naming it (a typo such as ``"**/bias"`` for a leaf called ``b``, or a pattern
shadowed by an earlier one), except a trailing ``"**"``: the catch-all is the fallback, and a
model whose leaves earlier patterns cover entirely leaves it nothing to take.

On packed params (:func:`optix.pack`) specs are resolved leaf by original leaf through the pack's
layout, then per buffer: a weight-decay mask that splits a buffer becomes a per-element mask;
``masked``, ``freeze`` and ``partition`` need every leaf of a buffer to agree (pack each group on
its own).

A dict that reads both ways (its keys hold ``/`` or wildcards and are also exactly the params'
top-level keys, as with haiku's ``"mlp/~/linear"``) is accepted when both readings agree and is
an error otherwise; ``mask_is_tree=True`` (``labels_are_tree=True``) then forces the tree.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Mapping
from typing import Any

import jax

from optix import _pack
from optix._keypath import key_str
from optix._keypath import parts

_PATTERN_CHARS = frozenset("*?[/")
_MISSING = object()  # a leaf a partial tree does not reach


def _is_none(x: Any) -> bool:
    return x is None


def is_nnx_variable(x: Any) -> bool:
    """Whether ``x`` is a flax ``nnx.Variable`` (without importing flax)."""
    nnx = sys.modules.get("flax.nnx")
    variable = getattr(nnx, "Variable", None)
    return variable is not None and isinstance(x, variable)


def _children(node: Any) -> list[tuple[str, Any]]:
    """The direct children of a pytree node with their key text (``None`` children kept)."""
    pairs, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda y: y is not node)
    return [(key_str(path[0]), child) for path, child in pairs]


def _unwrap(x: Any) -> Any:
    """An nnx ``Variable`` as the value it holds; anything else as it is."""
    if is_nnx_variable(x):
        kids = _children(x)
        if len(kids) == 1 and kids[0][0] == "value":
            return kids[0][1]
    return x


def positions(tree: Any) -> list[tuple[tuple[str, ...], Any]]:
    """``(path parts, leaf)`` for every leaf of ``tree`` in flattening order, ``None`` holes
    included (as ``None``); an nnx ``Variable``'s ``value`` segment is dropped."""
    out = []
    pairs, _ = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: x is None or is_nnx_variable(x)
    )
    for path, x in pairs:
        if not is_nnx_variable(x):
            out.append((parts(path), x))
            continue
        inner, _ = jax.tree_util.tree_flatten_with_path(x, is_leaf=_is_none)
        for sub, leaf in inner:
            tail = () if parts(sub) == ("value",) else parts(sub)
            out.append((parts(path) + tail, leaf))
    return out


def leaf_paths(tree: Any) -> list[str]:
    """The path of every leaf of ``tree``, in flattening order (nnx ``value`` segments dropped).
    """
    return ["/".join(p) or "<root>" for p, x in positions(tree) if x is not None]


def _match(segments: tuple[str, ...], target: tuple[str, ...]) -> bool:
    """Whether the pattern ``segments`` matches all of ``target`` (``**`` spans segments)."""
    if not segments:
        return not target
    head, rest = segments[0], segments[1:]
    if head == "**":
        return any(_match(rest, target[i:]) for i in range(len(target) + 1))
    return bool(target) and fnmatch.fnmatchcase(target[0], head) and _match(rest, target[1:])


def matches(pattern: str, path: tuple[str, ...] | str) -> bool:
    """Whether ``pattern`` matches the leaf at ``path`` or one of its ancestors. A key that holds
    ``/`` (haiku's ``"mlp/~/linear"``) counts as several segments.
    """
    text = path if isinstance(path, str) else "/".join(path)
    target = tuple(s for s in text.split("/") if s)
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


def _is_leaf_value(x: Any) -> bool:
    return jax.tree_util.treedef_is_leaf(jax.tree.structure(x))


def is_pattern_dict(spec: Any) -> bool:
    """Whether ``spec`` is read as path patterns: a dict with string keys and leaf values, one of
    whose keys holds ``*``, ``?``, ``[`` or ``/``."""
    return (
        isinstance(spec, Mapping)
        and bool(spec)
        and all(isinstance(k, str) for k in spec)
        and all(_is_leaf_value(v) for v in spec.values())
        and any(_PATTERN_CHARS & set(k) for k in spec)
    )


def _show(path: tuple[str, ...]) -> str:
    return "/".join(path) or "<root>"


def _from_patterns(
    patterns: Mapping[str, Any], where: list[tuple[str, ...]], what: str, default: Any
) -> list:
    """The value of the first pattern matching each path. A leaf no pattern matches takes
    ``default`` (a value, or a function of the position index) or is an error; a pattern that
    takes no leaf is an error, except a trailing catch-all ``"**"``."""
    keys = list(patterns)
    taken = dict.fromkeys(keys, 0)
    values = []
    for i, path in enumerate(where):
        pattern = next((p for p in keys if matches(p, path)), None)
        if pattern is not None:
            taken[pattern] += 1
            values.append(patterns[pattern])
        elif default is not None:
            values.append(default(i) if callable(default) else default)
        else:
            raise ValueError(
                f"{what}: no pattern matches the leaf '{_show(path)}' (patterns: {keys}); add a "
                "catch-all such as '**'"
            )
    for k, pattern in enumerate(keys):
        if taken[pattern] or (pattern == "**" and k == len(keys) - 1):
            continue
        hit = next((_show(p) for p in where if matches(pattern, p)), None)
        if hit is None:
            shown = [_show(p) for p in where[:6]] + (["..."] if len(where) > 6 else [])
            raise ValueError(
                f"{what}: the pattern {pattern!r} matches no leaf; is it a typo? The leaves are "
                f"{shown}"
            )
        raise ValueError(
            f"{what}: the pattern {pattern!r} takes no leaf: every leaf it matches ('{hit}', ...) "
            "is taken by an earlier pattern (first match wins); reorder or remove it"
        )
    return values


def _broadcast(
    spec: Any, tree: Any, path: tuple[str, ...], what: str, out: list, partial: bool
) -> None:
    """Append one value per position of ``tree`` (``None`` holes included): ``spec`` mirrors
    ``tree`` down to some depth, and a leaf of ``spec`` covers the whole subtree below it. With
    ``partial``, a key of ``tree`` that ``spec`` leaves out gives ``_MISSING`` values."""
    spec, tree = _unwrap(spec), _unwrap(tree)
    if _is_leaf_value(spec):
        out.extend([spec] * len(jax.tree.leaves(tree, is_leaf=_is_none)))
        return
    if tree is None or _is_leaf_value(tree):
        raise ValueError(
            f"{what}: at '{_show(path)}' the params hold a leaf but {what} holds a "
            f"{type(spec).__name__}; a mask or label tree mirrors the params or a prefix of them"
        )
    kids, spec_kids = _children(tree), _children(spec)
    keys, spec_keys = [k for k, _ in kids], [k for k, _ in spec_kids]
    both_maps = isinstance(tree, Mapping) and isinstance(spec, Mapping)
    if not both_maps and type(spec) is not type(tree) and keys != spec_keys:
        raise ValueError(
            f"{what}: at '{_show(path)}' the params hold a {type(tree).__name__} with "
            f"{keys} but {what} holds a {type(spec).__name__} with {spec_keys}"
        )
    missing = [k for k in keys if k not in spec_keys]
    if partial and both_maps and missing and set(spec_keys) <= set(keys):
        by_key = dict(spec_kids)
        for key, child in kids:
            if key in by_key:
                _broadcast(by_key[key], child, (*path, key), what, out, partial)
            else:
                out.extend([_MISSING] * len(jax.tree.leaves(child, is_leaf=_is_none)))
        return
    if set(keys) != set(spec_keys) or len(keys) != len(spec_keys):
        extra = [k for k in spec_keys if k not in keys]
        detail = []
        if missing:
            detail.append(f"'{_show((*path, missing[0]))}' is in params but not in {what}")
        if extra:
            detail.append(f"'{_show((*path, extra[0]))}' is in {what} but not in params")
        hint = ""
        if isinstance(spec, Mapping) and all(isinstance(k, str) for k in spec):
            hint = (
                "; to select leaves by path instead, write patterns (keys with '*' or '/', "
                "such as 'encoder/**') and end with a catch-all '**'"
            )
        raise ValueError(
            f"{what} do not mirror the params: " + "; ".join(detail or ["keys differ"]) + hint
        )
    by_key = dict(spec_kids)
    for key, child in kids:
        _broadcast(by_key[key], child, (*path, key), what, out, partial)


def _tree_values(spec: Any, tree: Any, what: str, default: Any) -> list:
    """One value per position from a (prefix) tree ``spec``; where a ``default`` exists the tree
    may leave keys out, and their leaves take it."""
    out: list = []
    _broadcast(spec, tree, (), what, out, default is not None)
    if default is None:
        return out
    return [
        (default(i) if callable(default) else default) if v is _MISSING else v
        for i, v in enumerate(out)
    ]


def _mirrors_root(spec: Mapping, tree: Any) -> bool:
    tree = _unwrap(tree)
    if tree is None or _is_leaf_value(tree):
        return False
    keys = [k for k, _ in _children(tree)]
    return sorted(keys) == sorted(spec)


def _resolve_all(
    spec: Any, tree: Any, what: str, is_tree: bool | None, default: Any
) -> list[tuple[tuple[str, ...], Any, Any]]:
    """``(path, leaf or None, value)`` for every position of ``tree``."""
    if is_tree is False or (is_tree is None and is_function(spec)):
        spec = spec(tree)
    where = positions(tree)
    paths = [p for p, _ in where]
    if is_tree is not True and is_pattern_dict(spec):
        if not _mirrors_root(spec, tree):
            values = _from_patterns(spec, paths, what, default)
        else:
            values = _tree_values(spec, tree, what, default)
            ambiguous = (
                f"{what} is ambiguous: its keys are the params' top-level keys and also path "
                "patterns, and the two readings differ"
            )
            fix = (
                "; pass `mask_is_tree=True` / `labels_are_tree=True` for the tree reading, or "
                "rewrite the patterns"
            )
            try:
                as_patterns = _from_patterns(spec, paths, what, default)
            except ValueError as error:
                raise ValueError(f"{ambiguous}: as patterns, {error}{fix}") from None
            for path, a, b in zip(paths, as_patterns, values, strict=True):
                if a != b:
                    raise ValueError(
                        f"{ambiguous} at '{_show(path)}' ({b!r} as a tree, {a!r} as patterns)" + fix
                    )
    else:
        values = _tree_values(spec, tree, what, default)
    return [(p, x, v) for (p, x), v in zip(where, values, strict=True)]


def resolve_leaves(
    spec: Any,
    tree: Any,
    what: str,
    *,
    is_tree: bool | None = None,
    default: Any = None,
    elementwise: bool = False,
) -> list:
    """The value ``spec`` gives each leaf of ``tree``, in flattening order.

    ``spec`` is read as the module docstring says: a function, a dict of patterns or a (prefix)
    tree. ``tree`` may be a masked view of the params (``None`` where leaves were masked out); a
    spec written for the full params fits it, and patterns see the full paths. ``default``, when
    not None, is the value of a leaf no pattern matches (a value, or a function of the leaf),
    which is otherwise an error naming its path. A callable pytree, such as an equinox module,
    is a tree, never a function; ``is_tree=True`` forces a tree and ``is_tree=False`` a call.

    A tree without any leaf (optax's ``tree_map_params`` placeholder) gives ``[]``. Packed params
    (:func:`optix.pack`) are resolved through their layout, leaf by original leaf; a buffer whose
    leaves get different values is an error unless ``elementwise``, which gives that buffer a
    boolean array with one flag per element.
    """
    if not jax.tree.leaves(tree, is_leaf=_is_none):
        return []
    has_packed = any(
        isinstance(x, _pack.Packed)
        for x in jax.tree.leaves(tree, is_leaf=lambda y: isinstance(y, _pack.Packed))
    )
    collapse = None
    if has_packed and jax.tree.structure(spec) != jax.tree.structure(tree):
        tree, collapse = _pack.expanded(tree)
    fn = default
    if callable(default):
        every = [x for _, x in positions(tree)]
        fn = lambda i: None if every[i] is None else default(every[i])  # noqa: E731
    resolved = [(p, v) for p, x, v in _resolve_all(spec, tree, what, is_tree, fn) if x is not None]
    if collapse is None:
        return [v for _, v in resolved]
    return collapse([(_show(p), v) for p, v in resolved], what, elementwise)


def resolve(
    spec: Any,
    tree: Any,
    what: str,
    *,
    is_tree: bool | None = None,
    elementwise: bool = True,
) -> Any:
    """Like :func:`resolve_leaves`, as a tree with the structure of ``tree`` (elementwise masks
    allowed on packed buffers by default)."""
    values = resolve_leaves(spec, tree, what, is_tree=is_tree, elementwise=elementwise)
    return jax.tree.unflatten(jax.tree.structure(tree), values)
