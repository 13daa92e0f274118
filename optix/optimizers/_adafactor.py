r"""Adafactor: the factored second moment, and the alias that chains Adafactor's pieces.

Its two optional pieces, the step relative to the param scale and the momentum, live in
``_adafactor_parts.py``: one module for all of Adafactor would run past the ~350 lines a module
is kept under.

Reference: Shazeer & Stern, `Adafactor: adaptive learning rates with sublinear memory cost
<https://arxiv.org/abs/1804.04235>`_, ICML 2018.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._chain import chain
from optix.optimizers._adafactor_parts import adafactor_momentum
from optix.optimizers._adafactor_parts import scale_by_param_block_rms
from optix.toolkit import BetaOrNone
from optix.toolkit import Finite
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import NonNegativeOrNone
from optix.toolkit import checked
from optix.toolkit import leafwise
from optix.toolkit import transform
from optix.transforms._blockclip import clip_by_block_rms
from optix.transforms._matrix_spec import leaf_specs
from optix.transforms._matrix_spec import resolve_layout
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr


def factored_dims(
    shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int
) -> tuple[int, int] | None:
    """``(d1, d0)``: the second-largest and the largest axis of ``shape``, or None (unfactored).

    A leaf is factored when it has two or more axes and its second-largest axis has at least
    ``min_dim_size_to_factor`` elements. Ties go to the later axis for ``d0``, as in optax.
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def _mean(x: jax.Array, axis: int, keepdims: bool = False) -> jax.Array:
    """The mean along ``axis`` as a sum of ``x / n``: finite whenever every entry is (a plain sum
    of squared gradients overflows first)."""
    return jnp.sum(x / x.shape[axis], axis=axis, keepdims=keepdims)


class ScaleByFactoredRmsState(NamedTuple):
    """State of :func:`scale_by_factored_rms`: the (factored) second-moment statistics."""

    hyperparams: HyperparamState  # decay_rate, decay_offset, eps; count is t - 1
    v_row: Updates  # factored leaves: mean of g^2 over axis d0; others: a (1,) placeholder
    v_col: Updates  # factored leaves: mean of g^2 over axis d1; others: a (1,) placeholder
    v: Updates  # unfactored leaves: running mean of g^2; factored ones: a (1,) placeholder


@transform(ScaleByFactoredRmsState)
def scale_by_factored_rms(
    decay_rate: NonNegative = 0.8,
    decay_offset: Finite = 0,
    eps: NonNegative = 1e-30,
    *,
    factored: bool = True,
    min_dim_size_to_factor: int = 128,
    nu_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""Divide by the root of a (factored) running mean of squared gradients, as in Adafactor.

    With the decay schedule ``beta_t = 1 - (t - offset)^(-c)`` (``c = decay_rate``, ``t`` the
    1-based step) and ``G = |g_t|^2 + eps1``: a leaf with a second-largest axis ``d1`` of at least
    ``min_dim_size_to_factor`` elements (and largest axis ``d0``) keeps row and column means only,

    .. math::
        R_t = \beta_t R_{t-1} + (1-\beta_t) \operatorname{mean}_{d_0} G, \quad
        C_t = \beta_t C_{t-1} + (1-\beta_t) \operatorname{mean}_{d_1} G, \quad
        u_t = g_t \Big/ \sqrt{R_t C_t / \operatorname{mean}_{d_1} R_t}

    and every other leaf (scalars, vectors, small matrices) keeps the full
    ``V_t = beta_t V_{t-1} + (1-beta_t) G`` and gets ``u_t = g_t / sqrt(V_t)``. This is
    ``optax.scale_by_factored_rms``; the decay schedule is computed in the hyperparameter precision
    (optax computes it in float32 even under x64).

    Args:
      decay_rate: ``c`` >= 0 (0.8 in the paper).
      decay_offset: step offset of the decay schedule (for fine-tuning, the step it started at).
      eps: ``eps1`` >= 0, added to ``|g|^2`` (1e-30 in the paper).
      factored: factor large leaves (False: never).
      min_dim_size_to_factor: the second-largest axis a factored leaf needs.
      nu_dtype: dtype of the statistics (default: the param's real dtype widened to at least float32).
      matrix_spec: which two axes a leaf is factored over, as :class:`optix.MatrixSpec` per leaf
        (a tree, a function of the params, or path patterns; other leaves keep the largest two
        axes): ``d1`` its one fan-in axis and ``d0`` its one fan-out axis, every other axis a
        batch axis (each matrix of a stack keeps its own row and column means, as with the
        default). Factored when both sides have at least ``min_dim_size_to_factor`` elements;
        a spec whose batch axes leave no matrix keeps the full ``V``.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_factored_rms(), optix.scale_lr(1e-2))

    Reference: Shazeer & Stern, `Adafactor: adaptive learning rates with sublinear memory cost
    <https://arxiv.org/abs/1804.04235>`_, ICML 2018 (Algorithms 4 and 5).
    """
    _validate.check_int("min_dim_size_to_factor", min_dim_size_to_factor, 1)
    spec = Hyperparams(decay_rate=decay_rate, decay_offset=decay_offset, eps=eps)

    def dims_of(tree):
        """``(d1, d0)`` or None per leaf of ``tree`` (flattening order)."""
        out = []
        for path, x, ms in leaf_specs(matrix_spec, tree, "`scale_by_factored_rms`"):
            if ms is None:
                out.append(factored_dims(tuple(x.shape), factored, min_dim_size_to_factor))
                continue
            lay = resolve_layout(ms, tuple(x.shape), path, "`scale_by_factored_rms`")
            if lay is None:  # the batch axes leave no matrix: the full V
                out.append(None)
                continue
            if len(lay.fan_in) != 1 or len(lay.fan_out) != 1 or lay.blocks != (1, 1):
                raise ValueError(
                    f"`scale_by_factored_rms`: leaf '{path}' of shape {tuple(x.shape)}: Adafactor "
                    "factors over one fan-in and one fan-out axis (the others are batch axes, "
                    f"and no blocks), got {ms}"
                )
            d1, d0 = lay.fan_in[0], lay.fan_out[0]
            big = min(x.shape[d1], x.shape[d0]) >= min_dim_size_to_factor
            out.append((d1, d0) if factored and big else None)
        return out

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_factored_rms` params")
        params = _tree.as_arrays(params)
        _tree.check_state_dtype("nu_dtype", nu_dtype)

        def stats(p, fd):
            dt = _tree.real_dtype(_tree.state_dtype(p.dtype, nu_dtype))
            if fd is None:  # (1,) placeholders, one buffer each (a donated state must not alias)
                return (
                    jnp.zeros((1,), dt),
                    jnp.zeros((1,), dt),
                    jnp.zeros_like(p, dtype=dt),
                )  # keeps the param's sharding
            d1, d0 = fd
            row = jnp.zeros(tuple(n for a, n in enumerate(p.shape) if a != d0), dt)
            col = jnp.zeros(tuple(n for a, n in enumerate(p.shape) if a != d1), dt)
            return row, col, jnp.zeros((1,), dt)

        leaves, treedef = jax.tree.flatten(params)
        fds = dims_of(params)
        cols = list(zip(*[stats(p, fd) for p, fd in zip(leaves, fds, strict=True)], strict=True))
        cols = cols or [(), (), ()]
        rows, columns, full = (treedef.unflatten(list(c)) for c in cols)
        return ScaleByFactoredRmsState(spec.init(), rows, columns, full)

    def update(updates, state, params=None, **extra):
        del params, extra
        # state.v holds a (1,) placeholder for factored leaves, so only float leaves and the
        # structure are checked against it (not shapes)
        _validate.check_float_leaves(updates, "`scale_by_factored_rms` updates")
        _validate.check_same_structure(
            updates, state.v, "updates", "the `scale_by_factored_rms` state"
        )
        h, hyperparams = spec.step(state.hyperparams)
        c, eps = h.decay_rate, h.eps
        # The schedule's step k = t - offset. Before the offset it stays at its first step
        # (k = 1, beta = 0), where k^(-c) would be infinite (k = 0) or NaN (k < 0).
        k = jnp.maximum((h.t - 1).astype(c.dtype) - h.decay_offset + 1, 1)
        beta = 1 - k ** (-c)

        fds = iter(dims_of(updates))  # leafwise runs over the leaves in flattening order

        def adafactor(g, row, col, v):
            sq = _tree.abs_sq(g) + eps
            fd = next(fds)
            if fd is None:
                v = beta * v + (1 - beta) * sq
                return g * jax.lax.rsqrt(v), row, col, v
            d1, d0 = fd
            row = beta * row + (1 - beta) * _mean(sq, d0)
            col = beta * col + (1 - beta) * _mean(sq, d1)
            row_axis = d1 - 1 if d1 > d0 else d1  # d1's position once d0 is removed
            # rsqrt(R / mean R) as rsqrt(R) sqrt(mean R): a quotient of two huge statistics would
            # go through a reciprocal below the float range (flushed to 0, so rsqrt(0) = inf)
            row_factor = jax.lax.rsqrt(row) * jnp.sqrt(_mean(row, row_axis, keepdims=True))
            col_factor = jax.lax.rsqrt(col)
            u = g * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col_factor, d1)
            return u, row, col, v

        updates, v_row, v_col, v = leafwise(adafactor, updates, state.v_row, state.v_col, state.v)
        return updates, ScaleByFactoredRmsState(hyperparams, v_row, v_col, v)

    return GradientTransformation(init, update)


@checked
def adafactor(
    learning_rate: NonNegative,
    min_dim_size_to_factor: int = 128,
    decay_rate: NonNegative = 0.8,
    decay_offset: Finite = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: NonNegativeOrNone = 1.0,
    momentum: BetaOrNone = None,
    weight_decay_rate: NonNegativeOrNone = None,
    eps: NonNegative = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any | Callable[[Params], Any] | None = None,
    *,
    eps_scale: NonNegative = 1e-3,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""Adafactor: factored second moments, update clipping and a step relative to the params.

    With ``beta_t = 1 - (t - offset)^(-decay_rate)`` and ``G_t = |g_t|^2 + eps``:

    .. math::
        \hat V_t = \begin{cases} R_t C_t / \operatorname{mean}(R_t) & \text{factored leaf} \\
        \beta_t \hat V_{t-1} + (1-\beta_t) G_t & \text{otherwise} \end{cases}, \quad
        U_t = \frac{g_t}{\sqrt{\hat V_t}}, \quad
        \hat U_t = \frac{U_t}{\max(1, \mathrm{rms}(U_t) / d)}, \\
        \theta_t = \theta_{t-1} - \eta_t \max(\epsilon_2, \mathrm{rms}(\theta_{t-1}))
        \, \hat U_t

    where ``R_t``, ``C_t`` are running means of ``G_t`` over the largest and the second-largest
    axis of a leaf (factored only when that second-largest axis has at least
    ``min_dim_size_to_factor`` elements; see :func:`scale_by_factored_rms`), ``d`` is
    ``clipping_threshold`` and ``epsilon_2 = eps_scale``. The chain is
    :func:`scale_by_factored_rms`, :func:`clip_by_block_rms`, :func:`scale_by_param_block_rms`,
    optional :func:`adafactor_momentum` (an EMA without bias correction), optional
    :func:`add_decayed_weights`, :func:`scale_lr`. With the defaults this is ``optax.adafactor``
    exactly.

    Differences from optax, both from optix's rule that the learning rate is applied last:

    - ``weight_decay_rate`` is multiplied by the learning rate (``theta -= eta (U + lambda
      theta)``, as in torch.optim.Adafactor and AdamW); optax subtracts ``lambda theta``
      unscaled. For a constant rate, optix's ``lambda`` equals optax's divided by ``eta``.
    - With ``momentum`` and a learning-rate *schedule*, the EMA averages directions and the
      current rate scales the result; optax averages already-scaled steps. They agree for a
      constant rate.

    The paper's relative step size ``min(1e-2, 1/sqrt(t))`` is the schedule
    ``lambda count: jnp.minimum(1e-2, 1 / jnp.sqrt(count + 1))``.

    Args:
      learning_rate: ``eta``, the (relative, with ``multiply_by_parameter_scale``) step size.
      min_dim_size_to_factor: the second-largest axis a leaf needs to be factored.
      decay_rate: exponent of the second-moment decay schedule (0.8).
      decay_offset: step offset of that schedule (for fine-tuning).
      multiply_by_parameter_scale: scale steps by ``max(eps_scale, rms(theta))``.
      clipping_threshold: ``d`` >= 0 for update clipping, or None for no clipping.
      momentum: EMA decay in [0, 1) of the updates, or None (the default) for none.
      weight_decay_rate: ``lambda`` >= 0, decoupled and scaled by the learning rate, or None.
      eps: ``epsilon_1`` added to the squared gradients (1e-30).
      factored: False keeps full second moments for every leaf.
      weight_decay_mask: which params decay; default all.
      eps_scale: ``epsilon_2``, the smallest param scale (1e-3).
      mu_dtype: dtype of the momentum buffer; nu_dtype: of the second-moment statistics.
      matrix_spec: the two axes each leaf is factored over (see :func:`scale_by_factored_rms`);
        the update clipping and the param scale stay per leaf.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adafactor(1e-2)
      >>> params = {"w": jnp.ones((256, 512)), "b": jnp.zeros(512)}
      >>> state = tx.init(params)
      >>> state[0].v_row["w"].shape, state[0].v_col["w"].shape, state[0].v["b"].shape
      ((256,), (512,), (512,))

    Reference: Shazeer & Stern, `Adafactor: adaptive learning rates with sublinear memory cost
    <https://arxiv.org/abs/1804.04235>`_, ICML 2018.
    """
    # checked here, under the names the caller wrote (the transforms name them differently)
    parts = [
        scale_by_factored_rms(
            decay_rate,
            decay_offset,
            eps,
            factored=factored,
            min_dim_size_to_factor=min_dim_size_to_factor,
            nu_dtype=nu_dtype,
            matrix_spec=matrix_spec,
        )
    ]
    if clipping_threshold is not None:
        parts.append(clip_by_block_rms(clipping_threshold))
    if multiply_by_parameter_scale:
        parts.append(scale_by_param_block_rms(eps_scale))
    _tree.check_state_dtype("mu_dtype", mu_dtype)
    if momentum is not None:
        parts.append(adafactor_momentum(momentum, mu_dtype=mu_dtype))
    if weight_decay_rate is not None:
        parts.append(add_decayed_weights(weight_decay_rate, weight_decay_mask))
    parts.append(scale_lr(learning_rate))
    return chain(*parts)
