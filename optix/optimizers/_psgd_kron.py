r"""PSGD Kron: preconditioned SGD with a Kronecker-factored preconditioner fitted on the Lie group
of triangular matrices.

Reference: Xi-Lin Li, `Preconditioned stochastic gradient descent
<https://arxiv.org/abs/1512.04202>`_, IEEE TNNLS 2018; the Kron variant (gradient whitening,
``P = Q^T Q`` with one factor per axis) of the author's psgd_torch, as written in the ``kron`` of
Evan Walters' psgd_jax (https://github.com/evanatyourservice/psgd_jax, ``psgd_jax/kron.py``).
"""

from __future__ import annotations

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
from optix.toolkit import checked
from optix.toolkit import transform
from optix.transforms._ema import ema
from optix.transforms._kron_factors import balance
from optix.transforms._kron_factors import fit
from optix.transforms._kron_factors import init_factors
from optix.transforms._kron_factors import precondition
from optix.transforms._kron_factors import trust_region
from optix.transforms._matrix import check_real_leaves
from optix.transforms._matrix import decayed_weights
from optix.transforms._scale import scale_lr

_SHAPELESS = object()  # a reference leaf without a shape: the factors are checked per leaf
_BALANCE_EVERY = 100  # steps between rebalancings of a leaf's factors (a no-op on Q^T Q)


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


def _probe(key: jax.Array, step: Any, leaf_index: int, shape: tuple, dtype: Any) -> jax.Array:
    """The random probe ``v`` of one leaf at one step of :func:`scale_by_psgd_kron`:
    ``jax.random.normal(optix.noise_key(key, step, leaf_index), shape, dtype)`` (the same key
    derivation as :func:`optix.add_noise`), ``step`` 0-based, ``dtype`` the leaf's compute
    dtype."""
    k = jax.random.fold_in(jax.random.fold_in(key, step), leaf_index)
    return jax.random.normal(k, shape, dtype)


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
    a pure function of its seed and its inputs. The probe of leaf ``i`` (in ``jax.tree``
    flattening order) at 0-based step ``t`` is ``jax.random.normal(optix.noise_key(key, t, i),
    shape, dtype)`` in the leaf's compute dtype, ``key`` the raw PRNG key data in the state.

    Leaves of more than two axes raise an error (use a 2-D view of them, or another optimizer).

    Args:
      precond_lr: ``eta_Q`` > 0, the step size of the factors (psgd's default 0.1).
      init_scale: ``Q_0 = init_scale^{1/k} I`` for a leaf of ``k`` axes.
      max_size_triangular: axes longer than this get a diagonal factor.
      min_ndim_triangular: leaves with fewer axes get diagonal factors only.
      precond_update_every: update the factors every this many steps.
      trust_region_scale: ``s`` of the trust region; None: no trust region.
      seed: an int or a PRNG key, for the probes.
      precond_dtype: dtype of the factors; default: the compute dtype (>= float32).

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

    def check_ndim(tree):
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if jnp.ndim(x) > 2:
                raise ValueError(
                    f"`scale_by_psgd_kron`: leaf '{jax.tree_util.keystr(path)}' has "
                    f"{jnp.ndim(x)} axes {jnp.shape(x)}; psgd_kron preconditions scalars, "
                    "vectors and matrices only. Reshape it to a matrix in the model, or give "
                    "it another optimizer (optix.partition)."
                )

    def leaf_init(p):
        dtype = _tree.state_dtype(p.dtype, precond_dtype)
        shape = tuple(jnp.shape(p))
        return PsgdKronLeafState(
            init_factors(shape, q0, dtype, max_size_triangular, min_ndim_triangular)
        )

    def init(params):
        params = _tree.as_arrays(params)
        bare = _tree.unwrap_variables(params)  # per-leaf nodes never sit in a Variable
        check_real_leaves(bare, "scale_by_psgd_kron")
        check_ndim(bare)
        # a fresh buffer per init: a donated state must not take the transform's own key with it
        fresh_key = jnp.array(key, copy=True)
        return ScaleByPsgdKronState(spec.init(), fresh_key, jax.tree.map(leaf_init, bare))

    def update(updates, state, params=None, **extra):
        del params, extra
        is_leaf_state = lambda x: isinstance(x, PsgdKronLeafState)  # noqa: E731
        _validate.check_updates(
            updates,
            jax.tree.map(lambda s: _SHAPELESS, state.leaves, is_leaf=is_leaf_state),
            "scale_by_psgd_kron",
        )
        check_real_leaves(updates, "scale_by_psgd_kron")
        check_ndim(updates)
        h, hyperparams = spec.step(state.hyperparams)
        step = h.t - 1  # 0-based: the probes' step
        do_balance = h.t % _BALANCE_EVERY == 0
        leaves, treedef = jax.tree.flatten(updates)
        states = treedef.flatten_up_to(state.leaves)

        def leaf(i, g, s):
            sizes = tuple(q.shape[0] for q in s.factors if q.ndim)
            if sizes != g.shape:
                raise ValueError(
                    f"`scale_by_psgd_kron`: leaf {i} has shape {g.shape} but its state was built "
                    f"for shape {sizes}; was the state initialised with the same params?"
                )
            gc = _tree.upcast(g)
            factors = tuple(q.astype(gc.dtype) for q in s.factors)

            def refit(factors):
                factors = jax.lax.cond(do_balance, balance, lambda f: f, factors)
                v = _probe(state.key, step, i, gc.shape, gc.dtype)
                return fit(factors, gc, v, h.precond_lr.astype(gc.dtype))

            if precond_update_every == 1:
                factors = refit(factors)
            else:
                due = (h.t - 1) % precond_update_every == 0
                factors = jax.lax.cond(due, refit, lambda f: f, factors)
            u = trust_region(precondition(factors, gc), trust_region_scale)
            new = PsgdKronLeafState(
                tuple(q.astype(old.dtype) for q, old in zip(factors, s.factors, strict=True))
            )
            return u.astype(g.dtype), new

        with jax.numpy_dtype_promotion("standard"):
            outs = [leaf(i, g, s) for i, (g, s) in enumerate(zip(leaves, states, strict=True))]
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
        scale_by_psgd_kron(
            precond_lr,
            init_scale=init_scale,
            max_size_triangular=max_size_triangular,
            min_ndim_triangular=min_ndim_triangular,
            precond_update_every=precond_update_every,
            trust_region_scale=trust_region_scale,
            seed=seed,
            precond_dtype=precond_dtype,
        ),
        *decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
