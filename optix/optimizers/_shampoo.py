r"""Shampoo: Kronecker-factored preconditioning of matrix-shaped leaves, block by block.

Reference: Gupta, Koren & Singer, `Shampoo: preconditioned stochastic tensor optimization
<https://arxiv.org/abs/1802.09568>`_, ICML 2018; Anil et al., `Scalable second order optimization
for deep learning <https://arxiv.org/abs/2002.09018>`_, 2020 (blocking, grafting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import Literal
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
from optix.optimizers._sgd import scale_by_momentum
from optix.optimizers._shampoo_eigen import scale_by_eigenvalue_corrected_shampoo
from optix.toolkit import Beta
from optix.toolkit import Fraction
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import arguments_for
from optix.toolkit import checked
from optix.toolkit import transform
from optix.transforms._distribute import map_leaf_jobs
from optix.transforms._layer_graft import Graft
from optix.transforms._layer_graft import check_graft
from optix.transforms._layer_graft import graft_hyperparams
from optix.transforms._layer_graft import graft_leaves
from optix.transforms._layer_graft import graft_state
from optix.transforms._matrix import accumulate
from optix.transforms._matrix import block_factors
from optix.transforms._matrix import check_layout_args
from optix.transforms._matrix import checked_layouts
from optix.transforms._matrix import decayed_weights
from optix.transforms._matrix import init_leaf_states
from optix.transforms._matrix import inverse_root
from optix.transforms._matrix import leaf_layout
from optix.transforms._matrix import matmul
from optix.transforms._matrix import stack_blocks
from optix.transforms._matrix import transpose
from optix.transforms._matrix import unstack_blocks
from optix.transforms._matrix_spec import layout_tree
from optix.transforms._scale import scale_lr


class ShampooLeafState(NamedTuple):
    """Per-leaf state of :func:`scale_by_shampoo`. The tuples run over the leaf's groups of
    equal-shaped blocks (:func:`~optix.transforms._matrix.block_groups`); each entry stacks that
    group's blocks on its leading axis, ``(n_blocks, n, n)``, or is None where that side is not
    preconditioned."""

    left: tuple  # L of each block
    right: tuple  # R of each block
    left_root: tuple  # L^{-1/p}, refreshed every ``precondition_frequency`` steps
    right_root: tuple  # R^{-1/p}
    diag: jax.Array | None  # diagonal AdaGrad statistic: 1-D leaves and unpreconditioned blocks


class ScaleByShampooState(NamedTuple):
    """State of :func:`scale_by_shampoo`."""

    hyperparams: HyperparamState  # eps, stat_decay (graft_eps, graft_b2 with grafting)
    leaves: Updates  # a ShampooLeafState per leaf
    graft: Updates | None  # grafting second moment per leaf (None without grafting)


@transform(ScaleByShampooState)
def scale_by_shampoo(
    eps: NonNegative = 1e-6,
    stat_decay: Fraction = 1.0,
    *,
    precondition_frequency: int = 1,
    block_size: int | None = None,
    max_precond_dim: int = 1024,
    graft: Graft = "none",
    graft_eps: NonNegative = 1e-8,
    graft_b2: Beta = 0.999,
    stat_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""Precondition each matrix on both sides by inverse fourth roots of gradient statistics.

    .. math::
        L_t = L_{t-1} + G_t G_t^T, \quad R_t = R_{t-1} + G_t^T G_t, \quad
        u_t = (L_t + \epsilon I)^{-1/4} \, G_t \, (R_t + \epsilon I)^{-1/4}

    (Algorithm 1 of the paper, whose ``L_0 = eps I``). Which axes of a leaf form ``G`` is its
    :class:`optix.MatrixSpec`: a 2-D leaf ``(in, out)`` is one matrix, a conv kernel ``(h, w, in,
    out)`` the ``(h*w*in, out)`` matrix; a leaf with batch axes (scanned layers, experts) is that
    many independent matrices, each with its own ``L``, ``R`` and roots (stacked in the state like
    blocks); a leaf of 3 or 5+ axes needs a spec. Each matrix is cut into blocks of
    at most ``block_size`` per side, each block with its own ``L`` and ``R``; a block side longer
    than ``max_precond_dim`` gets no factor, and the other side's root becomes ``-1/2`` (the
    exponent is ``-1/(2k)`` with ``k`` the number of preconditioned sides, as in the paper's
    order-``k`` Algorithm 2). A block with no preconditioned side, and every scalar or 1-D leaf,
    takes diagonal AdaGrad: ``u = g / sqrt(H + eps)`` with ``H`` accumulated like ``L``. Blocks of
    one shape are stacked and share one batched ``eigh``, so the compiled step does not grow with
    the number of blocks (a leaf has at most four block shapes).

    The roots are recomputed by ``eigh`` every ``precondition_frequency`` steps (on steps 1,
    1 + f, ...) and reused in between. Round-off in the eigenvalues of the PSD statistics is
    clipped to ``n * machine_eps * max eigenvalue`` before ``eps`` is added: in float64 this
    changes nothing measurable, in float32 it keeps noise directions from being amplified; keep
    ``eps`` well above ``1e-7 * max eigenvalue`` when running in float32.

    With ``graft``, each leaf's update (each matrix's, for a stack) keeps Shampoo's direction but
    takes the Frobenius norm of a simpler optimizer's update on the same gradient (layer-wise
    grafting, Agarwal et al. 2020; the grafts of Distributed Shampoo): ``"sgd"`` (``g`` itself),
    ``"adagrad"`` (``g / (sqrt(sum g^2) + graft_eps)``), ``"rmsprop"`` (``g / (sqrt(v) +
    graft_eps)``, ``v`` an EMA of ``g^2`` with decay ``graft_b2``, not bias-corrected) or
    ``"adam"`` (the same with ``v`` bias-corrected; Adam's second moment without momentum).
    Distributed Shampoo grafts block by block and feeds both its preconditioner and the grafted
    method the momentum-filtered gradient; optix grafts per leaf (per matrix of a stack) on the
    raw gradient, and :func:`optix.shampoo`'s momentum acts on the grafted step.

    Args:
      eps: damping ``epsilon`` >= 0 added to every statistic before its root.
      stat_decay: in [0, 1]; 1 (default) sums the statistics as in the paper; below 1 they are an
        EMA with that decay.
      precondition_frequency: recompute the roots every this many steps.
      block_size: largest block side; None: one block per leaf.
      max_precond_dim: block sides longer than this get no preconditioner.
      graft: ``"none"``, ``"sgd"``, ``"adagrad"``, ``"rmsprop"`` or ``"adam"``.
      graft_eps, graft_b2: the grafted optimizer's ``eps`` >= 0 and (RMSprop, Adam) second-moment
        decay in [0, 1) (Distributed Shampoo's defaults: 0.99 for RMSprop, 0.999 for Adam).
      stat_dtype: dtype of the statistics and roots; default: the compute dtype (>= float32).
      matrix_spec: the :class:`optix.MatrixSpec` of each leaf of 2+ axes: a tree of them (a
        prefix of the params; None: the default), a function of the params, or a dict of path
        patterns such as ``{"experts/**": optix.MatrixSpec(batch_axes=(0,))}``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_shampoo(block_size=128, precondition_frequency=10)
      >>> state = tx.init({"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)})

    Reference: Gupta, Koren & Singer, `Shampoo: preconditioned stochastic tensor optimization
    <https://arxiv.org/abs/1802.09568>`_, ICML 2018; Anil et al., `Scalable second order
    optimization for deep learning <https://arxiv.org/abs/2002.09018>`_, 2020 (blocking,
    grafting).
    """
    check_layout_args(precondition_frequency, block_size, max_precond_dim)
    _tree.check_state_dtype("stat_dtype", stat_dtype)
    check_graft(graft)
    spec = Hyperparams(
        eps=eps, stat_decay=stat_decay, **graft_hyperparams(graft, graft_eps, graft_b2)
    )
    is_leaf_state = lambda x: isinstance(x, ShampooLeafState)  # noqa: E731

    def layouts_of(tree):
        return layout_tree(matrix_spec, tree, "`scale_by_shampoo`")

    def diag_shape(lay):
        """The diagonal statistic of a leaf's matrices: ``(rows, cols)``, or ``(count, rows,
        cols)`` for a stack."""
        return (lay.n_matrices, *lay.matrix) if lay.stacked else lay.matrix

    def leaf_init(p, lay):
        dtype = _tree.state_dtype(p.dtype, stat_dtype)
        layout = leaf_layout(lay, block_size, max_precond_dim)
        if layout is None:
            return ShampooLeafState((), (), (), (), jnp.zeros(p.shape, dtype))
        needs_diag = any(not any(s) for s in layout[1])
        diag = jnp.zeros(diag_shape(lay), dtype) if needs_diag else None
        return ShampooLeafState(*block_factors(lay, layout, dtype), diag)

    def init(params):
        params, leaves = init_leaf_states(params, leaf_init, layouts_of, "scale_by_shampoo")
        return ScaleByShampooState(spec.init(), leaves, graft_state(params, graft))

    def update(updates, state, params=None, **extra):
        del params, extra
        layouts = checked_layouts(
            updates, state.leaves, leaf_init, is_leaf_state, layouts_of, "scale_by_shampoo"
        )
        h, hyperparams = spec.step(state.hyperparams)
        decay, damp = h.stat_decay, h.eps
        refresh = (h.t - 1) % precondition_frequency == 0  # on steps 1, 1 + f, 1 + 2f, ...

        def prepare(g, s, lay):
            """The leaf's matrix jobs (one per group of equal blocks) and what :func:`finish`
            needs; a leaf without a layout takes diagonal AdaGrad here and has no job."""
            # whole matrices when a mesh with explicit axes splits the leaf (tensor parallelism)
            gc = _tree.unsplit(_tree.upcast(g))
            layout = leaf_layout(lay, block_size, max_precond_dim)
            if layout is None:
                stat = accumulate(s.diag, gc * gc, decay)  # diagonal AdaGrad
                u = gc / jnp.sqrt(stat.astype(gc.dtype) + damp)
                return [], (u, ShampooLeafState((), (), (), (), stat.astype(s.diag.dtype)))
            groups, sides = layout
            gm = lay.to_stack(gc)  # (count, rows, cols): one matrix per batch index and block
            diag = None
            if s.diag is not None:
                diag = accumulate(s.diag, (gm * gm).reshape(s.diag.shape), decay)
            jobs = []
            # each group's blocks stacked: one batched eigh per group, whatever the block count
            for i, (group, (on_l, on_r)) in enumerate(zip(groups, sides, strict=True)):
                d_blk = None
                if diag is not None and not (on_l or on_r):
                    d_blk = stack_blocks(diag.reshape(gm.shape), group)
                arrays = (stack_blocks(gm, group), s.left[i], s.right[i])
                roots = (s.left_root[i], s.right_root[i])
                jobs.append(((on_l, on_r), (*arrays, *roots, d_blk)))
            return jobs, (lay, groups, diag, s.diag)

        def finish(context, results):
            """The leaf's update and state from its jobs' results."""
            if not results:
                return context
            lay, groups, diag, old_diag = context
            parts, lefts, rights, lroots, rroots = zip(*results, strict=True)
            u = lay.from_stack(unstack_blocks(list(parts), groups, (lay.n_matrices,)))
            new = ShampooLeafState(
                lefts, rights, lroots, rroots, None if diag is None else diag.astype(old_diag.dtype)
            )
            return u, new

        # the matrix work of every leaf, one job per group of equal blocks; under a distribution
        # each device computes only its share of the blocks
        preconditioned, leaves = map_leaf_jobs(
            prepare,
            precondition_block,
            finish,
            (decay, damp, refresh),
            updates,
            state.leaves,
            layouts,
        )

        updates, nu = graft_leaves(graft, updates, preconditioned, layouts, state.graft, h)
        return updates, ScaleByShampooState(hyperparams, leaves, nu)

    def precondition_block(sides, arrays, decay, damp, refresh):
        """One group of equal blocks (stacked on the leading axis): its statistics, roots and
        preconditioned blocks. ``sides``: which sides are preconditioned; ``d_blk``: the
        diagonal statistic of blocks with neither."""
        on_l, on_r = sides
        g_blk, left, right, lroot, rroot, d_blk = arrays
        gb = g_blk
        p = 2 * (on_l + on_r)
        if on_l:
            left = accumulate(left, matmul(g_blk, transpose(g_blk)), decay).astype(left.dtype)
            lroot = new_root(refresh, left, lroot, p, damp)
            gb = matmul(lroot.astype(gb.dtype), gb)
        if on_r:
            right = accumulate(right, matmul(transpose(g_blk), g_blk), decay).astype(right.dtype)
            rroot = new_root(refresh, right, rroot, p, damp)
            gb = matmul(gb, rroot.astype(gb.dtype))
        if d_blk is not None:
            gb = gb / jnp.sqrt(d_blk.astype(gb.dtype) + damp)
        return gb, left, right, lroot, rroot

    def new_root(refresh, stat, old_root, p, damp):
        """``(stat + damp I)^{-1/p}`` on a refresh step, else the root kept from the last one."""
        if precondition_frequency == 1:
            return inverse_root(stat, p, damp).astype(old_root.dtype)
        return jax.lax.cond(
            refresh,
            lambda: inverse_root(stat, p, damp).astype(old_root.dtype),
            lambda: old_root,
        )

    return GradientTransformation(init, update)


@checked
def shampoo(
    learning_rate: NonNegative,
    eps: NonNegative = 1e-6,
    stat_decay: Fraction = 1.0,
    momentum: Beta = 0.0,
    weight_decay: NonNegative = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    nesterov: bool = False,
    precondition_frequency: int = 1,
    block_size: int | None = None,
    max_precond_dim: int = 1024,
    graft: Graft = "none",
    graft_eps: NonNegative = 1e-8,
    graft_b2: Beta = 0.999,
    stat_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
    preconditioner: Literal["root", "eigenvalue_corrected"] = "root",
) -> GradientTransformation:
    r"""Shampoo: each matrix preconditioned on both sides by inverse fourth roots of its statistics.

    .. math::
        L_t = L_{t-1} + G_t G_t^T, \quad R_t = R_{t-1} + G_t^T G_t, \quad
        W_{t+1} = W_t - \eta \, (L_t + \epsilon I)^{-1/4} G_t (R_t + \epsilon I)^{-1/4}

    This is the paper's Algorithm 1 with its practical options: blocks, a root refresh every
    ``precondition_frequency`` steps, an EMA of the statistics (``stat_decay < 1``), layer-wise
    grafting onto AdaGrad's or Adam's step norm, then heavy-ball momentum (after grafting, as in
    the scalable implementation) and decoupled weight decay. Scalars and vectors take diagonal
    AdaGrad. See :func:`scale_by_shampoo` for the details and the float32 damping. The chain is
    ``chain(scale_by_shampoo(...), scale_by_momentum(momentum), add_decayed_weights(weight_decay,
    mask), scale_lr(learning_rate))``, without the momentum or the decay when they are zero.

    ``preconditioner="eigenvalue_corrected"`` puts
    :func:`optix.scale_by_eigenvalue_corrected_shampoo` in the place of :func:`scale_by_shampoo`
    (same arguments): Shampoo's factors give only the eigenbasis, and a diagonal second moment in
    it the scale (Distributed Shampoo's ``EigenvalueCorrectedShampooPreconditionerConfig``). Its
    SOAP-like settings: ``stat_decay=0.95`` (or 0.999), ``momentum=0.9``, ``eps=1e-8`` and
    ``precondition_frequency`` of 10 to 100; unlike :func:`optix.soap`, the momentum acts on the
    preconditioned step, not inside the eigenbasis.

    optax has no Shampoo; optix's is checked against a NumPy transcription of the paper's
    algorithm.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      eps, stat_decay, precondition_frequency, block_size, max_precond_dim: see
        :func:`scale_by_shampoo`.
      graft, graft_eps, graft_b2, stat_dtype, matrix_spec: see :func:`scale_by_shampoo`; a
        stacked leaf ``(L, d_in, d_out)`` needs a spec, e.g.
        ``matrix_spec={"layers/**": optix.MatrixSpec(batch_axes=(0,))}``.
      momentum: heavy-ball momentum in [0, 1) on the preconditioned step (0: none).
      weight_decay: decoupled decay ``lambda`` (multiplied by the learning rate).
      mask: which params decay: a tree of bools, a function or path patterns.
      nesterov: Nesterov momentum.
      preconditioner: ``"root"`` (default; inverse roots of the factors, the paper's Shampoo) or
        ``"eigenvalue_corrected"`` (EShampoo, see above).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((2, 2))}
      >>> tx = optix.shampoo(0.1)
      >>> state = tx.init(params)
      >>> g = {"w": jnp.array([[2.0, 0.0], [0.0, 0.5]])}
      >>> updates, state = tx.update(g, state, params)
      >>> updates["w"]  # (G G^T)^{-1/4} G (G^T G)^{-1/4} = sign(G) for a diagonal G
      Array([[-0.1, -0. ],
             [-0. , -0.1]], dtype=float32)

    Reference: Gupta, Koren & Singer, `Shampoo: preconditioned stochastic tensor optimization
    <https://arxiv.org/abs/1802.09568>`_, ICML 2018; Anil et al., `Scalable second order
    optimization for deep learning <https://arxiv.org/abs/2002.09018>`_, 2020.
    """
    moment = []
    if _validate.concrete_float(momentum) != 0.0:
        moment = [scale_by_momentum(momentum, nesterov=nesterov)]
    if preconditioner not in ("root", "eigenvalue_corrected"):
        raise ValueError(
            f"`preconditioner` must be 'root' or 'eigenvalue_corrected', got {preconditioner!r}"
        )
    scale_by = (
        scale_by_shampoo if preconditioner == "root" else scale_by_eigenvalue_corrected_shampoo
    )
    return chain(
        scale_by(**arguments_for(scale_by, locals())),
        *moment,
        *decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
