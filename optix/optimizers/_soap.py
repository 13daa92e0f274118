r"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner.

Reference: Vyas et al., `SOAP: improving and stabilizing Shampoo using Adam
<https://arxiv.org/abs/2409.11321>`_, ICLR 2025.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Beta
from optix.toolkit import BetaOrNone
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import arguments_for
from optix.toolkit import checked
from optix.toolkit import transform
from optix.transforms._distribute import map_leaf_jobs
from optix.transforms._matrix import accumulate
from optix.transforms._matrix import block_factors
from optix.transforms._matrix import check_layout_args
from optix.transforms._matrix import check_real_leaves
from optix.transforms._matrix import decayed_weights
from optix.transforms._matrix import init_leaf_states
from optix.transforms._matrix import leaf_layout
from optix.transforms._matrix import matmul
from optix.transforms._matrix import stack_blocks
from optix.transforms._matrix import transpose
from optix.transforms._matrix import unstack_blocks
from optix.transforms._matrix_spec import layout_tree
from optix.transforms._scale import scale_lr


class SoapLeafState(NamedTuple):
    """Per-leaf state of :func:`scale_by_soap`. The tuples run over the leaf's groups of
    equal-shaped blocks (see :func:`optix.transforms._matrix.block_groups`), each entry stacking
    that group's blocks on its leading axis, ``(n_blocks, n, n)``, or None where that side is not
    rotated; they are empty for leaves with fewer than two axes (or no elements), which take
    plain Adam."""

    left: tuple  # L of each block
    right: tuple  # R of each block
    left_basis: tuple  # Q_L: eigenvectors of L, largest eigenvalue first
    right_basis: tuple  # Q_R


class ScaleBySoapState(NamedTuple):
    """State of :func:`scale_by_soap`."""

    hyperparams: HyperparamState  # b1, b2, eps, shampoo_beta (if set)
    mu: Updates  # Adam's first moment, in the parameter basis
    nu: Updates  # Adam's second moment, in the eigenbasis (block by block)
    leaves: Updates  # a SoapLeafState per leaf


def _eigh_basis(stat: jax.Array) -> jax.Array:
    """Eigenvectors of each symmetric matrix of the stack ``stat``, largest eigenvalue first (the
    authors' first basis)."""
    return jnp.linalg.eigh(stat)[1][..., ::-1]


def _power_qr(stat: jax.Array, basis: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One power-iteration step with QR from the current basis (the paper's basis refresh), for
    each matrix of the stacks ``stat`` and ``basis``.

    The columns are first put in decreasing order of their Rayleigh quotients ``q^T stat q``;
    returns the new bases and those orders, by which the second moment is permuted too."""
    estimate = jnp.sum(basis * matmul(stat, basis), axis=-2)
    order = jnp.argsort(-estimate, axis=-1, stable=True)
    sorted_basis = jnp.take_along_axis(basis, order[:, None, :], axis=-1)
    q, _ = jnp.linalg.qr(matmul(stat, sorted_basis))
    return q, order


def _adam(gp, mp, v, b2, eps, step_size, beta_s, mode):
    """Adam on a (rotated) gradient ``gp`` and first moment ``mp``."""
    del beta_s, mode
    v_new = b2 * v + (1 - b2) * gp * gp
    return step_size * mp / (_tree.sqrt_flat_at_zero(v_new) + eps), v_new


def _rotated_adam(sides, arrays, *consts):
    """One group of equal blocks (stacked on the leading axis): Adam in the eigenbases of the
    statistics, then the statistics and bases updated. ``sides``: which sides are rotated."""
    on_l, on_r = sides
    gb, mb, vb, left, right, ql, qr = arrays
    beta_s, mode = consts[3], consts[4]
    gp, mp = gb, mb
    if on_l:
        gp, mp = matmul(transpose(ql), gp), matmul(transpose(ql), mp)
    if on_r:
        gp, mp = matmul(gp, qr), matmul(mp, qr)
    n, vb_new = _adam(gp, mp, vb, *consts)
    if on_l:
        n = matmul(ql, n)
    if on_r:
        n = matmul(n, transpose(qr))
    if on_l:
        left = accumulate(left, matmul(gb, transpose(gb)), beta_s).astype(ql.dtype)
        ql, vb_new = _new_basis(mode, left, ql, vb_new, 1)
    if on_r:
        right = accumulate(right, matmul(transpose(gb), gb), beta_s).astype(qr.dtype)
        qr, vb_new = _new_basis(mode, right, qr, vb_new, 2)
    return n, vb_new, left, right, ql, qr


def _new_basis(mode, stat, basis, v, axis):
    """Mode 0: the basis kept; 1: the first basis, by ``eigh``; 2: a refresh by power iteration
    and QR, with the block's rows (``axis`` 1) or columns (2) of ``v`` in the new order."""

    def keep():
        return basis, v

    def first_basis():
        return _eigh_basis(stat).astype(basis.dtype), v

    def refresh():
        q, order = _power_qr(stat, basis)
        index = order[:, :, None] if axis == 1 else order[:, None, :]
        return q.astype(basis.dtype), jnp.take_along_axis(v, index, axis=axis)

    return jax.lax.switch(mode, [keep, first_basis, refresh])


@transform(ScaleBySoapState)
def scale_by_soap(
    b1: Beta = 0.95,
    b2: Beta = 0.95,
    eps: NonNegative = 1e-8,
    shampoo_beta: BetaOrNone = None,
    *,
    precondition_frequency: int = 10,
    block_size: int | None = None,
    max_precond_dim: int = 10000,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    stat_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""Adam in the slowly changing eigenbasis of Shampoo's statistics (SOAP).

    For a matrix ``G`` with Shampoo statistics ``L, R`` and their eigenbases ``Q_L, Q_R``:

    .. math::
        G' = Q_L^T G Q_R, \quad M_t = \beta_1 M_{t-1} + (1-\beta_1) G, \quad
        V_t = \beta_2 V_{t-1} + (1-\beta_2) G' \odot G', \\
        u_t = \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t} \,
        Q_L \frac{Q_L^T M_t Q_R}{\sqrt{V_t} + \epsilon} Q_R^T, \quad
        L \leftarrow \beta_s L + (1-\beta_s) G G^T, \quad
        R \leftarrow \beta_s R + (1-\beta_s) G^T G

    (Algorithm 3 of the paper). Every ``precondition_frequency`` steps the bases are refreshed by
    one power-iteration step and a QR decomposition, ``Q <- QR(L Q)`` (the paper's Algorithm 4),
    after ordering the columns by ``q^T L q`` and permuting ``V`` to match, as in the authors'
    code. As there, the very first step only gathers ``L`` and ``R`` and computes the first bases
    by ``eigh``; its update is zero, and ``t`` counts the steps after it. Which axes of a leaf
    form ``G`` is its :class:`optix.MatrixSpec`: a 2-D leaf ``(in, out)`` is one matrix, a conv
    kernel ``(h, w, in, out)`` the ``(h*w*in, out)`` matrix (the authors' code rotates every axis
    of a tensor); a leaf with batch axes (scanned layers, experts) is that many independent
    matrices, each with its own statistics and bases; a leaf of 3 or 5+ axes needs a spec. Matrices can be cut into blocks of at most ``block_size`` per side,
    each with its own bases; a block side longer than ``max_precond_dim`` is not rotated; scalar
    and 1-D leaves take plain Adam (also with the first step skipped). Blocks of one shape are
    stacked and share one batched ``eigh`` or QR, so the compiled step does not grow with the
    number of blocks. ``M`` is kept in the parameter basis, so a basis refresh needs no
    re-projection of it.

    Args:
      b1, b2: Adam's moment decays (the authors use 0.95 for both).
      eps: Adam's ``epsilon``, added to ``sqrt(V)``.
      shampoo_beta: decay ``beta_s`` of ``L`` and ``R``; None: ``b2``.
      precondition_frequency: steps between basis refreshes.
      block_size: largest block side; None: one block per leaf.
      max_precond_dim: block sides longer than this keep the identity basis.
      mu_dtype, nu_dtype: dtypes of ``M`` and ``V``; default: the param's dtype widened to at least float32.
      stat_dtype: dtype of ``L``, ``R`` and the bases; default: the compute dtype (>= float32).
      matrix_spec: the :class:`optix.MatrixSpec` of each leaf of 2+ axes: a tree of them (a
        prefix of the params; None: the default), a function of the params, or a dict of path
        patterns such as ``{"experts/**": optix.MatrixSpec(batch_axes=(0,))}``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.scale_by_soap(), optix.scale_lr(3e-3))
      >>> state = tx.init({"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)})

    Reference: Vyas et al., `SOAP: improving and stabilizing Shampoo using Adam
    <https://arxiv.org/abs/2409.11321>`_, ICLR 2025.
    """
    check_layout_args(precondition_frequency, block_size, max_precond_dim)
    _tree.check_state_dtype("stat_dtype", stat_dtype)
    extra = {} if shampoo_beta is None else {"shampoo_beta": shampoo_beta}
    spec = Hyperparams(b1=b1, b2=b2, eps=eps, **extra)
    is_leaf_state = lambda x: isinstance(x, SoapLeafState)  # noqa: E731

    def layouts_of(tree):
        return layout_tree(matrix_spec, tree, "`scale_by_soap`")

    def leaf_init(p, lay):
        dtype = _tree.state_dtype(p.dtype, stat_dtype)
        layout = leaf_layout(lay, block_size, max_precond_dim)
        if layout is None:
            return SoapLeafState((), (), (), ())
        return SoapLeafState(*block_factors(lay, layout, dtype))

    def init(params):
        params, leaves = init_leaf_states(params, leaf_init, layouts_of, "scale_by_soap")
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, name="nu_dtype")
        return ScaleBySoapState(spec.init(), mu, nu, leaves)

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_soap")
        check_real_leaves(updates, "scale_by_soap")
        _validate.check_same_structure(
            updates,
            jax.tree.map(lambda _: 0, state.leaves, is_leaf=is_leaf_state),
            "updates",
            "the `scale_by_soap` state",
        )
        layouts = layouts_of(updates)
        h, hyperparams = spec.step(state.hyperparams)
        b1, b2, eps = h.b1, h.b2, h.eps
        beta_s = h.get("shampoo_beta", b2)
        count = h.t - 1  # steps before this one; the first only gathers statistics
        first = count == 0
        t = jnp.maximum(count, 1)  # Adam's step number: the steps after the first
        step_size = jnp.sqrt(_tree.bias_correction(b2, t)) / _tree.bias_correction(b1, t)
        # 0: keep the bases, 1: first bases by eigh, 2: refresh by power iteration + QR
        mode = jnp.where(first, 1, jnp.where(count % precondition_frequency == 0, 2, 0))

        consts = (b2, eps, step_size, beta_s, mode)

        def prepare(g, m, v, s, lay):
            """The leaf's first moment, its matrix jobs (one per group of equal blocks) and
            what :func:`finish` needs; a leaf without a layout takes plain Adam here."""
            # whole matrices when ZeRO splits the state over explicit mesh axes
            g, m, v, s = jax.tree.map(_tree.unsplit, (g, m, v, s))
            gc = _tree.upcast(g)
            m_new = b1 * m + (1 - b1) * gc
            layout = leaf_layout(lay, block_size, max_precond_dim)
            if layout is None:
                u, v_new = _adam(gc, m_new, v, *consts)
                return [], (g, m, v, m_new, (u, v_new, s))
            groups, sides = layout
            # (count, rows, cols): one matrix per batch index and block
            gm, mm, vm = lay.to_stack(gc), lay.to_stack(m_new), lay.to_stack(v)
            jobs = []
            # each group's blocks stacked: one batched eigh/QR per group, whatever the block count
            for i, (group, on) in enumerate(zip(groups, sides, strict=True)):
                gb, mb, vb = (stack_blocks(x, group) for x in (gm, mm, vm))
                stats = (s.left[i], s.right[i], s.left_basis[i], s.right_basis[i])
                jobs.append((on, (gb, mb, vb, *stats)))
            return jobs, (g, m, v, m_new, (lay, groups))

        def finish(context, results):
            """The leaf's update, moments and state from its jobs' results."""
            g, m, v, m_new, rest = context
            if results:
                lay, groups = rest
                parts, v_parts, lefts, rights, lqs, rqs = zip(*results, strict=True)
                u = lay.from_stack(unstack_blocks(list(parts), groups, (lay.n_matrices,)))
                v_new = lay.from_stack(unstack_blocks(list(v_parts), groups, (lay.n_matrices,)))
                new_s = SoapLeafState(lefts, rights, lqs, rqs)
            else:
                u, v_new, new_s = rest
            u = jnp.where(first, 0, u)
            m_new, v_new = jnp.where(first, m, m_new), jnp.where(first, v, v_new)
            return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype), new_s

        # the matrix work of every leaf, one job per group of equal blocks; under a distribution
        # each device computes only its share of the blocks
        updates, mu, nu, leaves = map_leaf_jobs(
            prepare,
            _rotated_adam,
            finish,
            consts,
            updates,
            state.mu,
            state.nu,
            state.leaves,
            layouts,
        )
        return updates, ScaleBySoapState(hyperparams, mu, nu, leaves)

    return GradientTransformation(init, update)


@checked
def soap(
    learning_rate: NonNegative,
    b1: Beta = 0.95,
    b2: Beta = 0.95,
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 0.01,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    shampoo_beta: BetaOrNone = None,
    precondition_frequency: int = 10,
    block_size: int | None = None,
    max_precond_dim: int = 10000,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    stat_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""SOAP: AdamW run in the eigenbasis of Shampoo's preconditioner, refreshed every few steps.

    .. math::
        W_t = W_{t-1} - \eta \Big(\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}
        Q_L \frac{Q_L^T M_t Q_R}{\sqrt{V_t} + \epsilon} Q_R^T + \lambda W_{t-1}\Big)

    See :func:`scale_by_soap` for ``M``, ``V`` and the bases. The chain is
    ``chain(scale_by_soap(...), add_decayed_weights(weight_decay, mask), scale_lr(learning_rate))``
    (no decay when it is zero). Defaults are the authors' (``b1 = b2 = 0.95``, refresh every 10
    steps, decay 0.01). The decay is applied to the parameters before the step, as in
    :func:`optix.adamw`; the authors' code decays the parameters after the step, which differs by
    ``eta^2 lambda`` times the step. As in the authors' code, the first step only gathers
    statistics and does not move the parameters (except by weight decay).

    optax has no SOAP; optix's is checked against a NumPy transcription of the paper's algorithm.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule (the authors use 3e-3).
      b1, b2, eps, shampoo_beta, precondition_frequency, block_size, max_precond_dim: see
        :func:`scale_by_soap`.
      mu_dtype, nu_dtype, stat_dtype, matrix_spec: see :func:`scale_by_soap`; a stacked leaf
        ``(L, d_in, d_out)`` needs a spec, e.g.
        ``matrix_spec={"layers/**": optix.MatrixSpec(batch_axes=(0,))}``.
      weight_decay: decoupled decay ``lambda`` (multiplied by the learning rate).
      mask: which params decay: a tree of bools, a function or path patterns.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
      >>> tx = optix.soap(3e-3, weight_decay=0.0)
      >>> state = tx.init(params)
      >>> g = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
      >>> updates, state = tx.update(g, state, params)  # the first step gathers statistics
      >>> float(abs(updates["w"]).max())
      0.0
      >>> updates, state = tx.update(g, state, params)
      >>> updates["b"]  # Adam's first step on a vector: -lr * sign(g)
      Array([-0.003, -0.003], dtype=float32)

    Reference: Vyas et al., `SOAP: improving and stabilizing Shampoo using Adam
    <https://arxiv.org/abs/2409.11321>`_, ICLR 2025.
    """
    return chain(
        scale_by_soap(**arguments_for(scale_by_soap, locals())),
        *decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
