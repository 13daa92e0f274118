r"""Which axes of a leaf form the matrix of Muon, Shampoo and SOAP: :class:`MatrixSpec`, the
defaults for 2-D and 4-D leaves, and the view of a leaf as a stack of independent matrices.

Reference: Jordan et al., `Muon: an optimizer for hidden layers in neural networks
<https://kellerjordan.github.io/posts/muon/>`_, 2024 (matrices per layer); Gupta, Koren & Singer,
`Shampoo: preconditioned stochastic tensor optimization <https://arxiv.org/abs/1802.09568>`_,
ICML 2018.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _paths
from optix._keypath import path_str

_DEFAULT = object()  # the value of a leaf that no pattern (or partial tree) gives a spec


def _axes(name: str, value: Any) -> tuple[int, ...] | None:
    """``value`` as a tuple of distinct ints (one int is a 1-tuple); None stays None."""
    if value is None:
        return None
    items = (value,) if isinstance(value, int) else tuple(value)
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in items):
        raise TypeError(f"`MatrixSpec.{name}` must be ints (axes), got {value!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"`MatrixSpec.{name}` names an axis twice: {value!r}")
    return items


@dataclasses.dataclass(frozen=True)
class MatrixSpec:
    r"""Which axes of a leaf form the matrix that Muon, Shampoo and SOAP orthogonalise or
    precondition, and which axes index independent matrices.

    A leaf of shape ``S`` is viewed as a stack of matrices: its axes are moved to the order
    ``(batch_axes, fan_in_axes, fan_out_axes)`` and reshaped to

    .. math::
        \Big(\prod_{a \in \text{batch}} S_a, \;
        \prod_{a \in \text{fan\_in}} S_a, \; \prod_{a \in \text{fan\_out}} S_a\Big),

    and every matrix of the stack is handled on its own (its own Newton-Schulz iteration, its
    own statistics and roots), exactly as if it were a separate 2-D leaf. A scanned layer stack
    ``(L, d_in, d_out)`` or a mixture-of-experts stack ``(E, d_in, d_out)`` is
    ``MatrixSpec(batch_axes=(0,))``: ``L`` or ``E`` matrices, not one tall matrix.

    The defaults, used for every leaf the ``matrix_spec=`` argument leaves out: a 2-D leaf
    ``(in, out)`` is ``fan_in_axes=(0,), fan_out_axes=(1,)``; a 4-D conv kernel ``(h, w, in,
    out)`` is ``fan_in_axes=(0, 1, 2), fan_out_axes=(3,)`` (with Muon's ``layout="out_in"``:
    ``(out, in)`` and ``(out, in, h, w)``, fan-out first). A leaf of 3 or 5+ axes has no default
    (a stack or one tensor? it cannot be told from the shape): such a leaf without a spec is an
    error naming it. Leaves without elements need no spec (there is nothing to compute). When the
    batch axes leave fewer than two axes and no fan axes are named (the biases ``(L, d)`` of a
    layer stack, matched by the same ``"layers/**"`` pattern), the leaf holds no matrix: Shampoo
    and SOAP take their element-wise rule on it, and Muon refuses it (label it ``"adam"``).

    Args:
      batch_axes: axes that index independent matrices (default none).
      fan_in_axes: the axes merged into the rows (the input side); None: from the rest, as
        below.
      fan_out_axes: the axes merged into the columns (the output side); None: from the rest.
        When both are None, the axes left after ``batch_axes`` take the 2-D or 4-D default;
        when one is None it is every axis the others leave.
      blocks: ``(row parts, column parts)``: cut each matrix into this grid of equal,
        independent blocks, e.g. ``(1, 3)`` for a fused QKV kernel ``(d, 3 * d)``. Rows
        (columns) run over the fan-in (fan-out) axes in the order given, so a cut falls on the
        first of them.

    Axes may be negative. At use, the axes must be disjoint, cover every axis of the leaf, and
    leave neither side empty; a side must divide by its number of blocks. The errors name the
    leaf's path.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"layers": {"w": jnp.zeros((4, 8, 6))}, "out": jnp.zeros((6, 2))}
      >>> tx = optix.muon(0.02, matrix_spec={"layers/**": optix.MatrixSpec(batch_axes=(0,))})
      >>> state = tx.init(params)
      >>> grads = {"layers": {"w": jnp.ones((4, 8, 6))}, "out": jnp.ones((6, 2))}
      >>> updates, state = tx.update(grads, state, params)
      >>> updates["layers"]["w"].shape
      (4, 8, 6)
    """

    batch_axes: tuple[int, ...] = ()
    fan_in_axes: tuple[int, ...] | None = None
    fan_out_axes: tuple[int, ...] | None = None
    blocks: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_axes", _axes("batch_axes", self.batch_axes) or ())
        object.__setattr__(self, "fan_in_axes", _axes("fan_in_axes", self.fan_in_axes))
        object.__setattr__(self, "fan_out_axes", _axes("fan_out_axes", self.fan_out_axes))
        blocks = tuple(self.blocks) if isinstance(self.blocks, Sequence) else ()
        if len(blocks) != 2 or not all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in blocks
        ):
            raise ValueError(
                f"`MatrixSpec.blocks` must be two ints >= 1 (row parts, column parts), got "
                f"{self.blocks!r}"
            )
        object.__setattr__(self, "blocks", blocks)


class MatrixLayout(NamedTuple):
    """A :class:`MatrixSpec` resolved against one leaf: non-negative axes, and the view of the
    leaf as a ``(count, rows, cols)`` stack of independent matrices (blocks included)."""

    shape: tuple[int, ...]
    batch: tuple[int, ...]
    fan_in: tuple[int, ...]
    fan_out: tuple[int, ...]
    blocks: tuple[int, int] = (1, 1)

    @property
    def stacked(self) -> bool:
        """Whether the leaf holds more than the one matrix (batch axes or blocks)."""
        return bool(self.batch) or self.blocks != (1, 1)

    @property
    def n_matrices(self) -> int:
        """The number of matrices in the stack."""
        return math.prod(self.shape[a] for a in self.batch) * self.blocks[0] * self.blocks[1]

    @property
    def matrix(self) -> tuple[int, int]:
        """``(rows, cols)`` of each matrix of the stack."""
        rows = math.prod(self.shape[a] for a in self.fan_in)
        cols = math.prod(self.shape[a] for a in self.fan_out)
        return rows // self.blocks[0], cols // self.blocks[1]

    def _perm(self) -> tuple[int, ...]:
        return self.batch + self.fan_in + self.fan_out

    def to_stack(self, x: jax.Array) -> jax.Array:
        """The ``(count, rows, cols)`` stack of the leaf ``x`` (batch-major, then blocks)."""
        perm = self._perm()
        if perm != tuple(range(x.ndim)):
            x = jnp.transpose(x, perm)
        (bi, bo), (r, c) = self.blocks, self.matrix
        if (bi, bo) == (1, 1):
            return x.reshape(self.n_matrices, r, c)
        x = x.reshape(-1, bi, r, bo, c).transpose(0, 1, 3, 2, 4)
        return x.reshape(self.n_matrices, r, c)

    def from_stack(self, y: jax.Array) -> jax.Array:
        """The leaf whose :meth:`to_stack` is ``y``."""
        perm = self._perm()
        (bi, bo), (r, c) = self.blocks, self.matrix
        if (bi, bo) != (1, 1):
            y = y.reshape(-1, bi, bo, r, c).transpose(0, 1, 3, 2, 4)
        y = y.reshape(tuple(self.shape[a] for a in perm))
        if perm != tuple(range(y.ndim)):
            y = jnp.transpose(y, tuple(perm.index(a) for a in range(y.ndim)))
        return y


def _default_sides(
    rest: tuple[int, ...], out_in: bool
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(fan_in, fan_out) of the axes ``rest`` by the 2-D / 4-D defaults; None if there is none."""
    if len(rest) == 2:
        return ((rest[1],), (rest[0],)) if out_in else ((rest[0],), (rest[1],))
    if len(rest) == 4:
        return (rest[1:], (rest[0],)) if out_in else (rest[:3], (rest[3],))
    return None


def _ambiguous(what: str, path: str, shape: tuple[int, ...], detail: str) -> ValueError:
    pattern = f"{path}" if path else "**"
    return ValueError(
        f"{what}: leaf '{path}' of shape {shape} {detail}: which axes form the matrix cannot be "
        "told from the shape (a stack of layers or experts, or one tensor?). Say it with "
        f"`matrix_spec`, e.g. matrix_spec={{{pattern!r}: optix.MatrixSpec(batch_axes=(0,))}} "
        "for a stack of matrices on axis 0, or optix.MatrixSpec(fan_in_axes=(0, 1), "
        "fan_out_axes=(2,)) for one matrix of the merged leading axes"
    )


def resolve_layout(
    spec: MatrixSpec | None,
    shape: tuple[int, ...],
    path: str,
    what: str,
    *,
    out_in: bool = False,
) -> MatrixLayout | None:
    """``spec`` checked against a leaf of ``shape`` at ``path``; None for a leaf that holds no
    matrix: with no spec, fewer than two axes or no elements; with a spec that names no fan axes,
    fewer than two axes left after the batch axes (those take the element-wise rule)."""
    ndim = len(shape)
    if spec is None:
        if ndim < 2 or math.prod(shape) == 0:
            return None
        sides = _default_sides(tuple(range(ndim)), out_in)
        if sides is None:
            raise _ambiguous(what, path, shape, f"has {ndim} axes and no `matrix_spec`")
        return MatrixLayout(shape, (), *sides)
    if not isinstance(spec, MatrixSpec):
        raise TypeError(
            f"{what}: `matrix_spec` gives leaf '{path}' {spec!r}; expected an optix.MatrixSpec "
            "or None (the default)"
        )

    def norm(axes: tuple[int, ...], name: str) -> tuple[int, ...]:
        bad = [a for a in axes if not -ndim <= a < ndim]
        if bad:
            raise ValueError(
                f"{what}: `MatrixSpec.{name}` {axes} for leaf '{path}' of shape {shape} names "
                f"axis {bad[0]}, out of range for {ndim} axes"
            )
        return tuple(a % ndim for a in axes)

    batch = norm(spec.batch_axes, "batch_axes")
    fan_in = None if spec.fan_in_axes is None else norm(spec.fan_in_axes, "fan_in_axes")
    fan_out = None if spec.fan_out_axes is None else norm(spec.fan_out_axes, "fan_out_axes")
    given = batch + (fan_in or ()) + (fan_out or ())
    if len(set(given)) != len(given):
        raise ValueError(
            f"{what}: the axes of the MatrixSpec for leaf '{path}' of shape {shape} overlap "
            f"(batch {batch}, fan_in {fan_in}, fan_out {fan_out}); each axis belongs to one"
        )
    rest = tuple(a for a in range(ndim) if a not in given)
    if fan_in is None and fan_out is None:
        if len(rest) < 2:  # a stack of vectors or scalars (biases of stacked layers): no matrix
            return None
        sides = _default_sides(rest, out_in)
        if sides is None:
            raise _ambiguous(
                what, path, shape, f"leaves {len(rest)} axes {rest} after the batch axes"
            )
        fan_in, fan_out = sides
    elif fan_in is None:
        fan_in = rest
    elif fan_out is None:
        fan_out = rest
    elif rest:
        raise ValueError(
            f"{what}: the MatrixSpec for leaf '{path}' of shape {shape} leaves axes {rest} out; "
            "every axis must be a batch, fan_in or fan_out axis"
        )
    if not fan_in or not fan_out:
        raise ValueError(
            f"{what}: the MatrixSpec for leaf '{path}' of shape {shape} leaves the "
            f"{'fan_in' if not fan_in else 'fan_out'} side without axes; a matrix needs both"
        )
    layout = MatrixLayout(tuple(shape), batch, fan_in, fan_out, spec.blocks)
    rows = math.prod(shape[a] for a in fan_in)
    cols = math.prod(shape[a] for a in fan_out)
    if rows % spec.blocks[0] or cols % spec.blocks[1]:
        raise ValueError(
            f"{what}: leaf '{path}' of shape {shape}: its {rows} x {cols} matrices do not cut "
            f"into {spec.blocks[0]} x {spec.blocks[1]} equal blocks (`MatrixSpec.blocks`)"
        )
    return layout


def leaf_specs(matrix_spec: Any, tree: Any, what: str) -> list[tuple[str, Any, MatrixSpec | None]]:
    """``(path, leaf, spec or None)`` for every leaf of ``tree`` (flattening order), from
    ``matrix_spec``: None (defaults everywhere), a (prefix) tree of MatrixSpec or None, a
    function ``params -> tree``, or a dict of path patterns (leaves no pattern matches take the
    defaults; a pattern that matches no leaf is an error)."""
    pairs = jax.tree_util.tree_leaves_with_path(tree)
    if matrix_spec is None:
        specs: list[Any] = [None] * len(pairs)
    else:
        specs = _paths.resolve_leaves(
            matrix_spec, tree, f"{what} matrix_spec", default=lambda _: _DEFAULT
        )
        specs = [None if s is _DEFAULT else s for s in specs]
    return [(path_str(p), x, s) for (p, x), s in zip(pairs, specs, strict=True)]


def leaf_layouts(
    matrix_spec: Any, tree: Any, what: str, *, out_in: bool = False
) -> list[MatrixLayout | None]:
    """The :class:`MatrixLayout` of every leaf of ``tree`` (flattening order), from
    ``matrix_spec`` as :func:`leaf_specs` reads it."""
    return [
        resolve_layout(s, tuple(x.shape), path, what, out_in=out_in)
        for path, x, s in leaf_specs(matrix_spec, tree, what)
    ]


def layout_tree(matrix_spec: Any, tree: Any, what: str, *, out_in: bool = False) -> Any:
    """:func:`leaf_layouts` as a tree shaped like ``tree`` (None where a leaf has no layout)."""
    layouts = leaf_layouts(matrix_spec, tree, what, out_in=out_in)
    return jax.tree.structure(tree).unflatten(layouts)
