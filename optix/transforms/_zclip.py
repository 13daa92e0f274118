"""ZClip: clip the gradient's global norm adaptively, from running statistics of that norm."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import Positive
from optix.toolkit import transform

_EPS = 1e-6


class ZclipState(NamedTuple):
    """State of :func:`zclip`.

    Attributes:
      hyperparams: ``alpha`` and ``z_thresh``.
      seen: int32 number of finite norms seen, saturating at ``warmup_steps``.
      mean: during warm-up the running mean of the norms seen; afterwards the EMA mean.
      var: during warm-up the running sum of squared deviations (Welford's ``M2``); afterwards the
        EMA variance. Both float32 (float64 with ``jax_enable_x64``).
    """

    hyperparams: HyperparamState
    seen: jax.Array
    mean: jax.Array
    var: jax.Array


@transform(ZclipState)
def zclip(
    alpha: Beta = 0.97,
    z_thresh: Positive = 2.5,
    *,
    warmup_steps: int = 25,
    max_norm: float | None = None,
) -> GradientTransformation:
    r"""ZClip: clip the global gradient norm when it is a z-score outlier of its running statistics.

    With :math:`g_t` the gradient, :math:`n_t = \lVert g_t \rVert_2` its global norm, and the
    running mean :math:`\mu` and variance :math:`v` of the norm (:math:`\sigma = \sqrt v`):

    .. math::
        z_t = \frac{n_t - \mu_{t-1}}{\sigma_{t-1} + \epsilon}, \qquad
        c_t = \begin{cases} \mu_{t-1} + \dfrac{z_\mathrm{thresh}^2}{z_t}\,\sigma_{t-1}
              & z_t > z_\mathrm{thresh} \\ n_t & \text{otherwise} \end{cases}

    .. math::
        u_t = g_t \cdot \min\Big(1, \frac{\min(c_t, m)}{n_t}\Big), \qquad
        \mu_t = \alpha \mu_{t-1} + (1-\alpha) c_t, \qquad
        v_t = \alpha v_{t-1} + (1-\alpha) (c_t - \mu_t)^2

    with :math:`\epsilon = 10^{-6}` and :math:`m` = ``max_norm`` (:math:`\infty` when ``None``).
    This is the paper's z-score mode with reciprocal clipping (the threshold
    :math:`\mu + z_\mathrm{thresh}\sigma / (z/z_\mathrm{thresh})`, its default): the larger the
    outlier, the harder it is clipped. The statistics are updated with the clipped norm
    :math:`c_t` (not with ``max_norm``'s cap), and the variance with the already-updated mean, as
    the authors' code does.

    Warm-up: the first ``warmup_steps`` finite norms are only collected (the gradient is passed
    unchanged, or clipped to ``max_norm`` when given); after the last of them, :math:`\mu` and
    :math:`v` are their mean and population variance (``ddof=0``), computed in one pass
    (Welford's algorithm, so no buffer of norms is kept).

    Choices: a non-finite norm (NaN or infinite gradient) leaves the gradient as it is and the
    statistics untouched, and does not count toward warm-up (combine with
    :func:`optix.skip_nonfinite` to skip such steps). The scale is ``clip / n_t`` exactly (no
    epsilon), applied only when ``n_t`` exceeds the clip value. Only upward outliers are clipped.

    Args:
      alpha: EMA decay in [0, 1) of the mean and variance (0.97 in the paper). Settable with
        :func:`optix.set_hyperparams`, or a schedule.
      z_thresh: z-score > 0 above which the norm is clipped (2.5 in the paper). Settable.
      warmup_steps: int >= 1, the number of norms collected before clipping starts.
      max_norm: ``None``, or a fixed cap > 0 on the norm, applied on every step (during warm-up
        too) on top of the adaptive clip.

    Returns:
      A transform with state :class:`ZclipState`; put it before an optimizer:
      ``optix.chain(optix.zclip(), optix.adamw(1e-3))``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.zclip(warmup_steps=3), optix.sgd(1.0))
      >>> state = tx.init({"w": jnp.zeros(1)})
      >>> for g in [1.0, 1.2, 0.8, 1.0, 50.0]:
      ...     updates, state = tx.update({"w": jnp.array([g])}, state)
      >>> float(updates["w"][0]) > -2.0  # the norm 50 was clipped to near the mean
      True

    Reference: Kumar, Owen, Chowdhury & Güra, `ZClip: adaptive spike mitigation for LLM
    pre-training <https://arxiv.org/abs/2504.02507>`_, 2025.
    """
    _validate.check_int("warmup_steps", warmup_steps, minimum=1)
    warmup = int(warmup_steps)
    if max_norm is not None:
        _validate.check_positive("max_norm", max_norm)
    cap = None if max_norm is None else float(max_norm)
    spec = Hyperparams(alpha=alpha, z_thresh=z_thresh)
    dtype = _validate.stored_dtype()

    def init(params):
        del params
        zero = jnp.zeros([], dtype)
        return ZclipState(spec.init(), jnp.zeros([], jnp.int32), zero, jnp.zeros([], dtype))

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_float_leaves(updates, "`zclip` updates")
        h, hyperparams = spec.step(state.hyperparams)
        alpha_, zt = jnp.asarray(h.alpha, dtype), jnp.asarray(h.z_thresh, dtype)
        norm = _tree.global_norm(updates).astype(dtype)
        finite = jnp.isfinite(norm)
        warming = state.seen < warmup

        # warm-up: Welford's running mean and M2; at the last warm-up norm, M2 becomes a variance
        k = (state.seen + 1).astype(dtype)
        delta = norm - state.mean
        w_mean = state.mean + delta / k
        w_m2 = state.var + delta * (norm - w_mean)
        w_var = jnp.where(state.seen + 1 == warmup, w_m2 / k, w_m2)

        # after warm-up: z-score, reciprocal clip, EMA of the clipped norm
        std = jnp.sqrt(state.var)
        z = (norm - state.mean) / (std + _EPS)
        outlier = z > zt
        clipped = jnp.where(outlier, state.mean + zt**2 / jnp.where(outlier, z, 1) * std, norm)
        e_mean = alpha_ * state.mean + (1 - alpha_) * clipped
        e_var = alpha_ * state.var + (1 - alpha_) * (clipped - e_mean) ** 2

        limit = jnp.where(warming, norm, clipped)
        if cap is not None:
            limit = jnp.minimum(limit, cap)
        limit = jnp.where(finite, limit, norm)
        scale = jnp.where(norm > limit, limit / jnp.where(norm > 0, norm, 1), 1)

        def apply(g):
            x = _tree.upcast(g)
            return (x * scale.astype(x.real.dtype)).astype(g.dtype)

        out = jax.tree.map(apply, updates)
        mean = jnp.where(finite, jnp.where(warming, w_mean, e_mean), state.mean)
        var = jnp.where(finite, jnp.where(warming, w_var, e_var), state.var)
        seen = jnp.where(jnp.logical_and(finite, warming), state.seen + 1, state.seen)
        return out, ZclipState(hyperparams, seen, mean, var)

    return GradientTransformation(init, update)
