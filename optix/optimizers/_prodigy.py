r"""Prodigy: AdamW whose step size is estimated on the fly, a faster-adapting D-Adaptation.

Reference: Mishchenko & Defazio, `Prodigy: an expeditiously adaptive parameter-free learner
<https://arxiv.org/abs/2306.06101>`_, ICML 2024.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._fusable import mark_elementwise
from optix.optimizers._dadapt import InitialEstimate
from optix.optimizers._dadapt import Mask
from optix.optimizers._dadapt import adam_correction
from optix.optimizers._dadapt import adam_moments
from optix.optimizers._dadapt import check_initial_estimate
from optix.optimizers._dadapt import check_step_inputs
from optix.optimizers._dadapt import decay_masks
from optix.optimizers._dadapt import l1
from optix.optimizers._dadapt import real_dot
from optix.optimizers._dadapt import total
from optix.toolkit import Beta
from optix.toolkit import BetaOrNone
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import transform


class ScaleByProdigyState(NamedTuple):
    """State of :func:`prodigy`: Adam's moments, the weighted gradient sum and ``d``."""

    hyperparams: HyperparamState  # learning_rate, b1, b2, beta3, eps, estim_lr0, ...; count is t
    mu: Updates  # first moment of d * g
    nu: Updates  # second moment of d * g
    s: Updates  # the weighted sum of gradients in the denominator of the d estimate
    params0: Params  # the initial params x_0
    d: jax.Array  # the distance estimate (the "estimated learning rate")
    numerator: jax.Array  # the weighted sum of <g_k, x_0 - x_k> in the numerator


@transform(ScaleByProdigyState)
def prodigy(
    learning_rate: NonNegative = 1.0,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    beta3: BetaOrNone = None,
    eps: NonNegative = 1e-8,
    estim_lr0: InitialEstimate = 1e-6,
    estim_lr_coef: NonNegative = 1.0,
    weight_decay: NonNegative = 0.0,
    *,
    mask: Mask = None,
    safeguard_warmup: bool = False,
    bias_correction: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Prodigy: AdamW whose base step size ``d`` is estimated on the fly (learning-rate free).

    .. math::
        \eta_t = d_t \, \mathrm{lr}_t \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) d_t g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t^2 g_t^2,

    .. math::
        r_t = \beta_3 r_{t-1} + \tfrac{d_t}{d_0} \eta_t \langle g_t, x_0 - x_t \rangle, \quad
        s_t = \beta_3 s_{t-1} + \tfrac{d_t}{d_0} \eta_t g_t, \quad
        d_{t+1} = \max\Bigl(d_t, \; c \frac{r_t}{\lVert s_t \rVert_1}\Bigr),

    .. math::
        x_{t+1} = x_t - \eta_t \Bigl(\frac{m_t}{\sqrt{v_t} + d_{t+1} \epsilon}
        + \lambda x_t\Bigr)

    with ``beta_3 = sqrt(beta_2)`` by default, ``d_0 = estim_lr0``, ``c = estim_lr_coef`` and the
    sums and norms taken over all leaves together (accumulated in float32 or wider). The
    ``learning_rate`` is a multiplier of the estimated step (keep it 1, or use a schedule that
    starts at 1, e.g. a cosine decay with warmup). Matches ``optax.contrib.prodigy`` and the
    authors' code with decoupled decay. Two deliberate differences: while ``||s_t||_1 = 0`` (only
    zero gradients so far) ``d`` is kept, where optax divides 0 by 0 and turns every later step
    into NaN; and ``bias_correction=False`` gives the authors' default (no Adam bias correction)
    while the default ``True`` follows optax.

    The result is the step ``x_{t+1} - x_t`` itself, minus sign and learning rate included: the
    learning rate weights each gradient inside ``r_t`` and ``s_t`` (and so the estimate of
    ``d``), so it cannot be applied afterwards by :func:`optix.scale_lr`. Chain gradient
    transforms (clipping, say) in front of it; nothing that rescales belongs after it.

    Args:
      learning_rate: multiplier of the estimated step (>= 0), or a schedule.
      b1, b2: Adam's moment decays in [0, 1).
      beta3: decay of the ``d`` estimate's sums in [0, 1); default ``sqrt(b2)``.
      eps: added to the denominator, scaled by ``d``.
      estim_lr0: the initial (under-)estimate ``d_0`` > 0.
      estim_lr_coef: ``c`` >= 0, multiplies every estimate of ``d``.
      weight_decay: ``lambda`` >= 0, decoupled (AdamW), scaled by ``eta_t``.
      mask: which params decay (a pytree of bools or a function of the params).
      safeguard_warmup: use ``d_t`` in place of ``eta_t`` in ``s_t``, which keeps a warmup
        schedule's small early rates from inflating the estimate.
      bias_correction: fold Adam's bias correction into ``eta_t``.
      mu_dtype, nu_dtype: dtypes of the moments (``mu_dtype`` also for ``s``).

    Returns:
      A transform whose updates are steps (add them with :func:`optix.apply_updates`); its
      ``update`` needs ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> loss = lambda p: jnp.sum((p - 3.0) ** 2)
      >>> tx = optix.prodigy()
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> for _ in range(200):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = optix.apply_updates(params, updates)
      >>> bool(loss(params) < 1e-2)
      True

    Reference: Mishchenko & Defazio, `Prodigy: an expeditiously adaptive parameter-free learner
    <https://arxiv.org/abs/2306.06101>`_, ICML 2024.
    """
    check_initial_estimate(estim_lr0)
    specs = dict(b1=b1, b2=b2, eps=eps, estim_lr0=estim_lr0, estim_lr_coef=estim_lr_coef)
    if beta3 is not None:
        specs["beta3"] = beta3
    spec = Hyperparams(learning_rate=learning_rate, weight_decay=weight_decay, **specs)

    def init(params):
        mu, nu = adam_moments(params, mask, mu_dtype, nu_dtype, "prodigy")
        hyperparams = spec.init()
        d = jnp.copy(hyperparams.values["estim_lr0"])  # a number, never a schedule
        # copies: no state leaf may share a buffer with the params or another leaf (donation)
        params0, s = jax.tree.map(jnp.copy, params), jax.tree.map(jnp.copy, mu)
        return ScaleByProdigyState(hyperparams, mu, nu, s, params0, d, jnp.zeros_like(d))

    def update(updates, state, params=None, **extra):
        del extra
        check_step_inputs(updates, state.mu, params, "prodigy")
        h, hyperparams = spec.step(state.hyperparams)
        b1, b2, d, d0 = h.b1, h.b2, state.d, h.estim_lr0
        beta3_ = h.beta3 if beta3 is not None else jnp.sqrt(b2)
        dlr = d * h.learning_rate * adam_correction(h, bias_correction)
        s_coef = (d / d0) * (d if safeguard_warmup else dlr)
        progress = total(
            lambda g, p0, p: real_dot(g, _tree.upcast(p0) - _tree.upcast(p)),
            updates,
            state.params0,
            params,
        )
        numerator = beta3_ * state.numerator + (d / d0) * dlr * progress

        # Two passes around a sum over every leaf, not leafwise's one (g, *state) ->
        # (u, *new_state): the step needs d_{t+1}, which needs ||s_t||_1 over all leaves, and it
        # reads the params and the decay mask, which are not state. So the casts are here.
        def moments(g, m, v, s):
            gc = _tree.upcast(g)
            m_new = b1 * m + (1 - b1) * d * gc
            v_new = b2 * v + (1 - b2) * d * d * _tree.abs_sq(gc)
            s_new = beta3_ * s + s_coef * gc
            return m_new.astype(m.dtype), v_new.astype(v.dtype), s_new.astype(s.dtype)

        mu, nu, s = _tree.map_leaves(moments, updates, state.mu, state.nu, state.s, n_out=3)
        denominator = total(l1, s)
        positive = denominator > 0
        estimate = h.estim_lr_coef * numerator / jnp.where(positive, denominator, 1)
        d_new = jnp.where(positive, jnp.maximum(d, estimate), d)
        masks = decay_masks(mask, params, "`prodigy` mask")

        def step(g, m, v, p, decay):
            wd = jnp.where(decay, h.weight_decay, 0)
            u = m / (_tree.sqrt_flat_at_zero(v) + d_new * h.eps) + wd * _tree.upcast(p)
            return (-dlr * u).astype(g.dtype)

        steps = _tree.map_leaves(step, updates, mu, nu, params, masks)
        new_state = ScaleByProdigyState(hyperparams, mu, nu, s, state.params0, d_new, numerator)
        return steps, new_state

    tx = GradientTransformation(init, update)
    # Its sums run over all leaves at once, so packing leaves end to end changes nothing.
    return mark_elementwise(tx) if mask is None else tx
