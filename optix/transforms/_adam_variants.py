"""Adam variants that change the second moment or its use: AdaBelief, Yogi, ADOPT."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._fusable import mark_elementwise
from optix._hyperparams import Hyperparams, HyperparamState, hyperparam_dtype


class ScaleByAdabeliefState(NamedTuple):
    """State of :func:`scale_by_adabelief`: the mean and the "belief" (centred second moment)."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root; count is t
    mu: Updates  # first moment
    nu: Updates  # EMA of |g - m|^2 (+ eps_root each step)


def scale_by_adabelief(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-16,
    eps_root: ScalarOrSchedule = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Scale by the mean gradient over the root of its EMA squared deviation (AdaBelief).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2) |g_t - m_t|^2 + \epsilon_{root}, \quad
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    ``eps_root`` is added to the stored ``s_t`` at every step (the paper's Algorithm 2, and
    optax's ``scale_by_belief``); ``eps`` is added outside the root.

    Args:
      b1, b2: moment decays in [0, 1).
      eps, eps_root: see above (both 1e-16 in the paper and optax).
      nesterov: use ``b1 m_hat_{t+1} + (1 - b1) g_t / (1 - b1^t)`` as the numerator, as optax's
        ``nesterov=True`` does.
      mu_dtype, nu_dtype: dtypes of the moments; default: the param's dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adabelief(), optix.scale_lr(1e-3))

    Reference: Zhuang et al., "AdaBelief optimizer: adapting stepsizes by the belief in observed
    gradients", NeurIPS 2020, Algorithm 2.
    """
    _validate.check_unit_interval("b1", b1)
    _validate.check_unit_interval("b2", b2)
    _validate.check_nonnegative("eps", eps)
    _validate.check_nonnegative("eps_root", eps_root)
    spec = Hyperparams(b1=b1, b2=b2, eps=eps, eps_root=eps_root)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_adabelief` params")
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")
        return ScaleByAdabeliefState(spec.init(), mu, nu)

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_adabelief")
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_ = hp["b1"], hp["b2"]
        bc1 = _tree.bias_correction(b1_, hyperparams.count)
        bc1_next = _tree.bias_correction(b1_, hyperparams.count + 1)
        # times sqrt(bc2) top and bottom: the corrections are per-step scalars, one division
        root_bc2 = jnp.sqrt(_tree.bias_correction(b2_, hyperparams.count))
        coef_m = (b1_ / bc1_next if nesterov else 1 / bc1) * root_bc2
        coef_g = (1 - b1_) / bc1 * root_bc2
        eps_t = hp["eps"] * root_bc2

        def leaf(g, m, v):
            gc = _tree.upcast(g)
            m_new = b1_ * m + (1 - b1_) * gc
            v_new = b2_ * v + (1 - b2_) * _tree.abs_sq(gc - m_new) + hp["eps_root"]
            m_hat = coef_m * m_new + coef_g * gc if nesterov else coef_m * m_new
            u = m_hat / (jnp.sqrt(v_new) + eps_t)
            return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        updates, mu, nu = _tree.map_leaves(leaf, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByAdabeliefState(hyperparams, mu, nu)

    return mark_elementwise(GradientTransformation(init, update))


class ScaleByYogiState(NamedTuple):
    """State of :func:`scale_by_yogi`: the hyperparameters and the two moment estimates."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root; count is t
    mu: Updates  # first moment
    nu: Updates  # additively updated second moment


def scale_by_yogi(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-3,
    eps_root: ScalarOrSchedule = 0.0,
    *,
    initial_accumulator_value: ArrayLike = 1e-6,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam with an additive second-moment update that cannot grow the step too fast (Yogi).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = v_{t-1} - (1-\beta_2)\, \mathrm{sign}(v_{t-1} - |g_t|^2)\, |g_t|^2, \quad
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t) + \epsilon_{root}}
        + \epsilon}

    Both moments start at ``initial_accumulator_value`` and both are bias-corrected, as in
    optax's ``scale_by_yogi`` (the paper's Algorithm 2 states the rule without bias correction,
    and its experiments start ``v`` at 1e-6).

    Args:
      b1, b2: moment decays in [0, 1).
      eps: added outside the root (1e-3, the paper's recommendation).
      eps_root: added inside the root.
      initial_accumulator_value: the value both moments start from (>= 0); only read by ``init``.
      mu_dtype, nu_dtype: dtypes of the moments; default: the param's dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_yogi(), optix.scale_lr(1e-2))

    Reference: Zaheer et al., "Adaptive methods for nonconvex optimization", NeurIPS 2018.
    """
    _validate.check_unit_interval("b1", b1)
    _validate.check_unit_interval("b2", b2)
    _validate.check_nonnegative("eps", eps)
    _validate.check_nonnegative("eps_root", eps_root)
    _validate.check_nonnegative("initial_accumulator_value", initial_accumulator_value)
    spec = Hyperparams(b1=b1, b2=b2, eps=eps, eps_root=eps_root)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_yogi` params")
        mu = _tree.moments_like(params, mu_dtype, fill=initial_accumulator_value, name="mu_dtype")
        nu = _tree.moments_like(
            params, nu_dtype, real=True, fill=initial_accumulator_value, name="nu_dtype"
        )
        return ScaleByYogiState(spec.init(), mu, nu)

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_yogi")
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_ = hp["b1"], hp["b2"]
        bc1 = _tree.bias_correction(b1_, hyperparams.count)
        bc2 = _tree.bias_correction(b2_, hyperparams.count)
        root_bc2 = jnp.sqrt(bc2)
        step_size, eps_root_t, eps_t = root_bc2 / bc1, hp["eps_root"] * bc2, hp["eps"] * root_bc2

        def leaf(g, m, v):
            gc = _tree.upcast(g)
            m_new = b1_ * m + (1 - b1_) * gc
            # sign(v - |g|^2) from sqrt(v) against |g|, and (1 - b2) |g|^2 as |sqrt(1 - b2) g|^2:
            # neither squares a large gradient on its own, so |g| >= 2e19 gives no inf - inf
            root_v, mag = jnp.sqrt(v), jnp.abs(gc)
            sign = jnp.where(root_v > mag, 1, jnp.where(root_v < mag, -1, 0)).astype(v.dtype)
            v_new = v - sign * _tree.abs_sq(jnp.sqrt(1 - b2_) * gc)
            # (m / bc1) / (sqrt(v / bc2 + eps_root) + eps) times sqrt(bc2) top and bottom: v is
            # never divided by bc2 (v / bc2 is about |g|^2), and each element divides once
            u = step_size * m_new / (jnp.sqrt(v_new + eps_root_t) + eps_t)
            return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        updates, mu, nu = _tree.map_leaves(leaf, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByYogiState(hyperparams, mu, nu)

    return mark_elementwise(GradientTransformation(init, update))


def adopt_clip_schedule(count: ArrayLike) -> jax.Array:
    """ADOPT's default clipping threshold ``c_t = t^(1/4)`` at update ``t = count``.

    Example:
      >>> import jax.numpy as jnp
      >>> from optix.transforms._adam_variants import adopt_clip_schedule
      >>> float(adopt_clip_schedule(jnp.asarray(16)))
      2.0
    """
    return jnp.asarray(count, hyperparam_dtype()) ** 0.25


class ScaleByAdoptState(NamedTuple):
    """State of :func:`scale_by_adopt`: the normalised-gradient momentum and the second moment."""

    hyperparams: HyperparamState  # b1, b2, eps[, clip_value]; count is t
    mu: Updates  # EMA of clipped g_t / max(sqrt(v_{t-1}), eps)
    nu: Updates  # EMA of |g|^2, started at |g_0|^2


def scale_by_adopt(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.9999,
    eps: ScalarOrSchedule = 1e-6,
    *,
    clip_value: ScalarOrSchedule | None = adopt_clip_schedule,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Normalise the gradient by the *previous* second moment, then take momentum (ADOPT).

    .. math::
        v_0 = |g_0|^2, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\,
        \mathrm{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, c_t\Big), \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \quad u_t = m_t

    The first update only initialises ``v`` and returns zeros (the paper's step 0). Because
    ``g_t`` is divided by a second moment that does not contain it, no bias correction is needed
    and any ``b2`` converges. This is the paper's Algorithm 2 and optax.contrib's
    ``scale_by_adopt``.

    Args:
      b1, b2: moment decays in [0, 1).
      eps: floor of the denominator.
      clip_value: the clipping threshold ``c_t``: a schedule of the update count (default
        ``t^(1/4)``, the paper's), a constant, or None for no clipping (the paper's Algorithm 1).
        Clipping is not defined for complex params.
      nesterov: return ``b1 m_t + (1 - b1) clip(...)`` instead of ``m_t`` (optax's option).
      mu_dtype, nu_dtype: dtypes of the moments; default: the param's dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adopt(), optix.scale_lr(1e-3))

    Reference: Taniguchi et al., "ADOPT: modified Adam can converge with any beta2 with the
    optimal rate", NeurIPS 2024, Algorithms 1 and 2.
    """
    _validate.check_unit_interval("b1", b1)
    _validate.check_unit_interval("b2", b2)
    _validate.check_nonnegative("eps", eps)
    clipping = clip_value is not None
    values: dict[str, ScalarOrSchedule] = dict(b1=b1, b2=b2, eps=eps)
    if clip_value is not None:
        _validate.check_nonnegative("clip_value", clip_value)
        values["clip_value"] = clip_value
    spec = Hyperparams(**values)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_adopt` params")
        if clipping:
            why = "clipping is not defined for them; pass clip_value=None to use ADOPT without it"
            _validate.check_real_leaves(params, "scale_by_adopt", why)
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")
        return ScaleByAdoptState(spec.init(), mu, nu)

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_adopt")
        first = state.hyperparams.count == 0
        hp, hyperparams = spec.step(state.hyperparams)
        b1_ = jnp.where(first, 1, hp["b1"])  # step 0 leaves m at 0 ...
        b2_ = jnp.where(first, 0, hp["b2"])  # ... and sets v_0 = |g_0|^2

        def leaf(g, m, v):
            gc = _tree.upcast(g)
            normed = gc / jnp.maximum(jnp.sqrt(v), hp["eps"])
            if clipping:
                normed = jnp.clip(normed, -hp["clip_value"], hp["clip_value"])
            m_new = b1_ * m + (1 - b1_) * normed
            v_new = b2_ * v + (1 - b2_) * _tree.abs_sq(gc)
            u = b1_ * m_new + (1 - b1_) * normed if nesterov else m_new
            return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        updates, mu, nu = _tree.map_leaves(leaf, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByAdoptState(hyperparams, mu, nu)

    return mark_elementwise(GradientTransformation(init, update))
