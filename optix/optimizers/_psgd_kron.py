r"""PSGD Kron: preconditioned SGD with a Kronecker-factored preconditioner fitted on the Lie group
of triangular matrices.

Reference: Xi-Lin Li, `Preconditioned stochastic gradient descent
<https://arxiv.org/abs/1512.04202>`_, IEEE TNNLS 2018; the Kron variant (gradient whitening,
``P = Q^T Q`` with one factor per axis) of the author's psgd_torch, as written in the ``kron`` of
Evan Walters' psgd_jax (https://github.com/evanatyourservice/psgd_jax, ``psgd_jax/kron.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import Positive
from optix.toolkit import arguments_for
from optix.toolkit import checked
from optix.toolkit import transform
from optix.transforms._distribute import map_each
from optix.transforms._ema import ema
from optix.transforms._kron_factors import balance
from optix.transforms._kron_factors import fit
from optix.transforms._kron_factors import init_factors
from optix.transforms._kron_factors import precondition
from optix.transforms._kron_factors import trust_region
from optix.transforms._matrix import check_real_leaves
from optix.transforms._matrix import checked_layouts
from optix.transforms._matrix import decayed_weights
from optix.transforms._matrix_spec import MatrixLayout
from optix.transforms._matrix_spec import leaf_specs
from optix.transforms._matrix_spec import resolve_layout
from optix.transforms._scale import scale_lr

_BALANCE_EVERY = 100  # steps between rebalancings of a leaf's factors (a no-op on Q^T Q)
_WHAT = "`scale_by_psgd_kron`"


class PsgdKronLeafState(NamedTuple):
    """Per-leaf state of :func:`scale_by_psgd_kron`: one factor of ``Q`` per axis of the leaf
    (an upper-triangular ``(n, n)`` matrix, or a diagonal kept as an ``(n,)`` vector), or a single
    scalar factor for a scalar leaf."""

    factors: tuple


class ScaleByPsgdKronState(NamedTuple):
    """State of :func:`scale_by_psgd_kron`."""

    hyperparams: HyperparamState  # precond_lr; count is t
    key: jax.Array  # raw PRNG key data of the probe vectors; fixed, the step is folded in
    leaves: Updates  # a PsgdKronLeafState per leaf


def _probe(key: jax.Array, step: Any, index: Any, shape: tuple, dtype: Any) -> jax.Array:
    """The probe ``v`` of array ``index`` (a leaf, or one matrix of a stack) at 0-based ``step``:
    ``jax.random.normal(optix.noise_key(key, step, index), shape, dtype)`` (as add_noise)."""
    k = jax.random.fold_in(jax.random.fold_in(key, step), index)
    return jax.random.normal(k, shape, dtype)


class _View(NamedTuple):
    """A leaf seen as the arrays PSGD preconditions, its *cores*: the leaf itself (``layout`` and
    ``perm`` unset), one matrix (``stacked`` False), or a ``(n, *core)`` stack of matrices, or
    of vectors or scalars (a stack of biases: ``perm`` moves its batch axes first)."""

    stacked: bool
    n: int
    core: tuple[int, ...]
    layout: MatrixLayout | None = None
    perm: tuple[int, ...] = ()

    def to_cores(self, x: jax.Array) -> jax.Array:
        if self.layout is not None:
            stack = self.layout.to_stack(x)
            return stack if self.stacked else stack[0]
        if self.perm:
            return jnp.transpose(x, self.perm).reshape((self.n, *self.core))
        return x

    def from_cores(self, y: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        if self.layout is not None:
            return self.layout.from_stack(y if self.stacked else y[None])
        if self.perm:
            y = y.reshape(tuple(shape[a] for a in self.perm))
            return jnp.transpose(y, tuple(self.perm.index(a) for a in range(len(shape))))
        return y


def _view(spec: Any, shape: tuple[int, ...], path: str) -> _View:
    """The cores of a leaf of ``shape`` under its :class:`optix.MatrixSpec` ``spec`` (None: the
    2-D and 4-D defaults; a leaf of 3 or 5+ axes without a spec is an error naming ``path``)."""
    lay = resolve_layout(spec, shape, path, _WHAT)
    if lay is not None:
        return _View(lay.stacked, lay.n_matrices, lay.matrix, lay)
    batch = () if spec is None else tuple(a % len(shape) for a in spec.batch_axes)
    if not batch or not math.prod(shape):
        return _View(False, 1, shape)
    rest = tuple(a for a in range(len(shape)) if a not in batch)
    count = math.prod(shape[a] for a in batch)
    return _View(True, count, tuple(shape[a] for a in rest), None, batch + rest)


@transform(ScaleByPsgdKronState)
def scale_by_psgd_kron(
    precond_lr: Positive = 0.1,
    *,
    init_scale: ArrayLike = 1.0,
    max_size_triangular: int = 8192,
    min_ndim_triangular: int = 2,
    precond_update_every: int = 1,
    trust_region_scale: float | None = 1.5,
    seed: Any = 0,
    precond_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""Precondition each leaf by ``P = Q^T Q``, with ``Q`` a Kronecker product of one factor per
    axis fitted by PSGD's gradient-whitening criterion.

    For a leaf ``G`` of shape ``(n_1, ..., n_k)``, ``Q = Q_1 \otimes ... \otimes Q_k`` with each
    ``Q_i`` upper triangular (``n_i x n_i``) or diagonal. On an update step, with ``v`` a standard
    normal probe of ``G``'s shape, ``A = Q G`` and ``B = Q^{-T} v`` (each factor applied along
    its axis, ``Q_i^{-T}`` by a triangular solve), each factor takes a step on the Lie group of
    triangular matrices:

    .. math::
        Q_i \leftarrow Q_i - \frac{\eta_Q}{\|A_{(i)} A_{(i)}^T + B_{(i)} B_{(i)}^T\|}
        \,\mathrm{triu}\big(A_{(i)} A_{(i)}^T - B_{(i)} B_{(i)}^T\big)\, Q_i

    (``X_(i)`` the mode-``i`` unfolding; ``\|\cdot\|`` a lower bound of the spectral norm, one
    power-iteration step from the row of largest norm; for a diagonal factor the diagonals of the
    two Gram matrices, multiplied elementwise and normalised by their largest entry). Its fixed
    point whitens the gradient: ``E[P G G^T P] = E[v v^T]``. Then the output is ``P G = Q^T Q G``
    (with the updated ``Q``), passed through psgd_jax's trust region
    ``s (0.1 sign(x) log(1 + |x|) + 0.9 tanh(x))``, ``x = (PG)/s``, ``s = trust_region_scale``.

    An axis of size 1, larger than ``max_size_triangular``, or of a leaf with fewer than
    ``min_ndim_triangular`` axes gets a diagonal factor; a scalar leaf one scalar factor. Factors
    start at ``init_scale^{1/k} I``. Every 100 steps the factors of a leaf are rebalanced to a
    common max-abs (which leaves ``Q`` unchanged).

    This is the ``kron`` of psgd_jax (``scale_by_kron``, at commit ``cb504bd``) with its default
    settings, except that the preconditioner is updated on every ``precond_update_every``-th step
    (on steps 1, 1 + f, ...) instead of with an annealed probability, and the rebalancing runs
    every 100 steps instead of with probability 0.01 per update: both deterministic, so a run is
    a pure function of its seed and its inputs (see below for the probes); and psgd_jax gives a
    leaf of more than two axes one factor per axis, where optix asks for its matrix view.

    Which axes of a leaf form a matrix is its :class:`optix.MatrixSpec` (``matrix_spec``), as for
    :func:`optix.muon` and :func:`optix.shampoo`: a 2-D leaf is one matrix, a 4-D conv kernel
    ``(h, w, in, out)`` the matrix ``(h w in, out)``, a leaf with batch axes (a scanned layer
    stack, an expert stack) that many independent matrices, and a leaf of 3 or 5+ axes without a
    spec an error naming it. Each matrix of a stack has its own factors (stacked on a leading
    axis of the leaf's state), its own probe and its own rebalancing, exactly as if it were a
    separate 2-D leaf; a stack the spec leaves without a matrix (the biases ``(L, d)`` of a layer
    stack) is that many separate vectors, each with its diagonal factor. Scalars and vectors
    without a spec are preconditioned as they are.

    The probes are deterministic: number the arrays PSGD preconditions in ``jax.tree``
    flattening order of the leaves, a leaf counting as one array and a stack as its matrices (or
    vectors) one by one in stack order (batch index, then block); the probe of array ``i`` at
    0-based step ``t`` is ``jax.random.normal(optix.noise_key(key, t, i), shape, dtype)`` in the
    leaf's compute dtype, ``key`` the raw PRNG key data in the state. So a ``(4, m, n)`` stack
    with ``batch_axes=(0,)`` takes the very steps of four ``(m, n)`` leaves in its place.

    Args:
      precond_lr: ``eta_Q`` > 0, the step size of the factors (psgd's default 0.1).
      init_scale: ``Q_0 = init_scale^{1/k} I`` for a leaf of ``k`` axes.
      max_size_triangular: axes longer than this get a diagonal factor.
      min_ndim_triangular: leaves with fewer axes get diagonal factors only.
      precond_update_every: update the factors every this many steps.
      trust_region_scale: ``s`` of the trust region; None: no trust region.
      seed: an int or a PRNG key, for the probes.
      precond_dtype: dtype of the factors; default: the compute dtype (>= float32).
      matrix_spec: the :class:`optix.MatrixSpec` of each leaf: a tree of them (a prefix of the
        params; None: the default), a function of the params, or a dict of path patterns such
        as ``{"layers/**": optix.MatrixSpec(batch_axes=(0,))}`` (other leaves: the defaults).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_psgd_kron()
      >>> state = tx.init({"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)})
      >>> [f.shape for f in state.leaves["w"].factors]
      [(4, 4), (3, 3)]

    Reference: Xi-Lin Li, `Preconditioned stochastic gradient descent
    <https://arxiv.org/abs/1512.04202>`_, IEEE TNNLS 2018.
    """
    if not isinstance(precond_update_every, int) or precond_update_every < 1:
        raise ValueError(
            f"`precond_update_every` must be an int >= 1, got {precond_update_every!r}"
        )
    for name, value in (
        ("max_size_triangular", max_size_triangular),
        ("min_ndim_triangular", min_ndim_triangular),
    ):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be an int >= 0, got {value!r}")
    q0 = _validate.concrete_float(init_scale)
    if q0 is None or not q0 > 0:
        raise ValueError(f"`init_scale` must be a concrete number > 0, got {init_scale!r}")
    if trust_region_scale is not None and not trust_region_scale > 0:
        raise ValueError(f"`trust_region_scale` must be > 0 or None, got {trust_region_scale!r}")
    _tree.check_state_dtype("precond_dtype", precond_dtype)
    key = _validate.raw_key(seed)
    spec = Hyperparams(precond_lr=precond_lr)

    def views(tree):
        return [
            _view(sp, tuple(jnp.shape(x)), path)
            for path, x, sp in leaf_specs(matrix_spec, tree, _WHAT)
        ]

    def leaf_init(p, view):
        dtype = _tree.state_dtype(p.dtype, precond_dtype)
        factors = init_factors(view.core, q0, dtype, max_size_triangular, min_ndim_triangular)
        if view.stacked:  # one set of factors per core, stacked on a leading axis
            factors = tuple(jnp.broadcast_to(q, (view.n, *q.shape)) for q in factors)
        return PsgdKronLeafState(factors)

    def init(params):
        params = _tree.as_arrays(params)
        bare = _tree.unwrap_variables(params)  # per-leaf nodes never sit in a Variable
        check_real_leaves(bare, "scale_by_psgd_kron")
        leaves, treedef = jax.tree.flatten(bare)
        states = [leaf_init(p, v) for p, v in zip(leaves, views(bare), strict=True)]
        # a fresh buffer per init: a donated state must not take the transform's own key with it
        fresh_key = jnp.array(key, copy=True)
        return ScaleByPsgdKronState(spec.init(), fresh_key, treedef.unflatten(states))

    def update(updates, state, params=None, **extra):
        del params, extra
        is_leaf_state = lambda x: isinstance(x, PsgdKronLeafState)  # noqa: E731
        leaf_views = checked_layouts(
            updates, state.leaves, leaf_init, is_leaf_state, views, _WHAT.strip("`"), flat=True
        )
        h, hyperparams = spec.step(state.hyperparams)
        step = h.t - 1  # 0-based: the probes' step
        do_balance = h.t % _BALANCE_EVERY == 0
        leaves, treedef = jax.tree.flatten(updates)
        states = treedef.flatten_up_to(state.leaves)
        # the probe index of each leaf's first core: the cores of a stack count one by one
        firsts = [0]
        for view in leaf_views:
            firsts.append(firsts[-1] + view.n)

        def leaf(view, arrays, key, step, do_balance, precond_lr, due):
            first, g, old = arrays
            # whole leaves and factors when a mesh with explicit axes splits them (ZeRO, tensor
            # parallelism): the refit and the kept factors must have one layout
            gc = _tree.unsplit(_tree.upcast(g))
            cores = view.to_cores(gc)
            factors = tuple(_tree.unsplit(q.astype(gc.dtype)) for q in old)
            lr = precond_lr.astype(gc.dtype)

            def refit(factors):
                if not view.stacked:
                    factors = jax.lax.cond(do_balance, balance, lambda f: f, factors)
                    return fit(factors, cores, _probe(key, step, first, view.core, gc.dtype), lr)

                def one(f, c, j):
                    f = jax.lax.cond(do_balance, balance, lambda f: f, f)
                    return fit(f, c, _probe(key, step, first + j, view.core, gc.dtype), lr)

                return jax.vmap(one)(factors, cores, jnp.arange(view.n))

            if precond_update_every == 1:
                factors = refit(factors)
            else:
                factors = jax.lax.cond(due, refit, lambda f: f, factors)
            u = (
                jax.vmap(precondition)(factors, cores)
                if view.stacked
                else precondition(factors, cores)
            )
            u = trust_region(view.from_cores(u, g.shape), trust_region_scale)
            new = PsgdKronLeafState(
                tuple(q.astype(q_old.dtype) for q, q_old in zip(factors, old, strict=True))
            )
            return u.astype(g.dtype), new

        # one job per leaf with elements; under a distribution each device fits the factors of
        # its share of the leaves (those of one view and shape batched together)
        jobs, owners = [], []
        for i, (g, s, view, first) in enumerate(
            zip(leaves, states, leaf_views, firsts[:-1], strict=True)
        ):
            if g.size:  # a leaf without elements has nothing to precondition
                jobs.append((view, (first, g, s.factors)))
                owners.append(i)
        due = (h.t - 1) % precond_update_every == 0
        consts = (state.key, step, do_balance, h.precond_lr, due)
        outs = list(zip(leaves, states, strict=True))
        with jax.numpy_dtype_promotion("standard"):
            for i, out in zip(owners, map_each(leaf, jobs, consts), strict=True):
                outs[i] = out
        new_updates = treedef.unflatten([u for u, _ in outs])
        new_leaves = treedef.unflatten([s for _, s in outs])
        return new_updates, ScaleByPsgdKronState(hyperparams, state.key, new_leaves)

    return GradientTransformation(init, update)


@checked
def psgd_kron(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    weight_decay: NonNegative = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    precond_lr: Positive = 0.1,
    init_scale: ArrayLike = 1.0,
    max_size_triangular: int = 8192,
    min_ndim_triangular: int = 2,
    precond_update_every: int = 1,
    trust_region_scale: float | None = 1.5,
    seed: Any = 0,
    precond_dtype: DTypeLike | None = None,
    mu_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""PSGD Kron: bias-corrected momentum preconditioned by a Kronecker-factored ``Q^T Q``.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad \hat m_t = m_t / (1 - \beta_1^t),
        \quad W_{t+1} = W_t - \eta\,\big(\mathrm{TR}(Q_t^T Q_t \hat m_t) + \lambda W_t\big)

    with ``Q_t`` fitted to whiten ``\hat m`` (momentum before preconditioning, as psgd_jax's
    ``kron``) and ``TR`` its trust region; see :func:`scale_by_psgd_kron` for the factors, their
    update and how this differs from psgd_jax's ``kron`` (a deterministic update interval). The
    chain is ``chain(ema(b1), scale_by_psgd_kron(...), add_decayed_weights(weight_decay, mask),
    scale_lr(learning_rate))``, without the momentum when ``b1 = 0`` or the decay when it is 0.

    Checked against a NumPy transcription of psgd_jax's ``kron`` fed the same probe vectors.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule (psgd_jax's default is 1e-3).
      b1: momentum ``beta_1`` in [0, 1) (0: none).
      weight_decay: decoupled decay ``lambda`` (multiplied by the learning rate).
      mask: which params decay: a tree of bools, a function or path patterns.
      precond_lr, init_scale, max_size_triangular, min_ndim_triangular, precond_update_every, trust_region_scale, seed, precond_dtype: see
        :func:`scale_by_psgd_kron`.
      mu_dtype: dtype of the momentum; default: the param's dtype widened to at least float32.
      matrix_spec: which axes of each leaf form its matrices (:class:`optix.MatrixSpec` per leaf,
        a tree, a function or path patterns); see :func:`scale_by_psgd_kron`. A stacked leaf
        ``(L, d_in, d_out)`` needs one, e.g. ``{"layers/**": optix.MatrixSpec(batch_axes=(0,))}``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
      >>> tx = optix.psgd_kron(1e-3, weight_decay=1e-4)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
      >>> updates, state = tx.update(grads, state, params)
      >>> updates["w"].shape
      (3, 2)

    Reference: Xi-Lin Li, `Preconditioned stochastic gradient descent
    <https://arxiv.org/abs/1512.04202>`_, IEEE TNNLS 2018.
    """
    _tree.check_state_dtype("mu_dtype", mu_dtype)
    moment = []
    if _validate.concrete_float(b1) != 0.0:
        moment = [ema(b1, debias=True, accumulator_dtype=mu_dtype)]
    return chain(
        *moment,
        scale_by_psgd_kron(**arguments_for(scale_by_psgd_kron, locals())),
        *decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
