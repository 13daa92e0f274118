"""The Adam family: Adam (and AMSGrad), Adamax, NAdam, RAdam, in torch.optim's conventions."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._fusable import mark_elementwise
from optix._hyperparams import Hyperparams, HyperparamState, hyperparam_dtype, register_rules


def _check_betas(b1: ScalarOrSchedule, b2: ScalarOrSchedule, eps: ScalarOrSchedule) -> None:
    _validate.check_unit_interval("b1", b1)
    _validate.check_unit_interval("b2", b2)
    _validate.check_nonnegative("eps", eps)


def _moments(params, mu_dtype, nu_dtype):
    return _tree.moments_like(params, mu_dtype, name="mu_dtype"), _tree.moments_like(
        params, nu_dtype, real=True, name="nu_dtype"
    )


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`: the hyperparameters and the two moment estimates."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root; count is t
    mu: Updates  # first moment
    nu: Updates  # second moment (of |g|^2)
    nu_max: Updates | None  # running max of nu (AMSGrad only; None otherwise)


def scale_by_adam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    *,
    amsgrad: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Rescale updates by bias-corrected moment estimates (Adam).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \quad
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t / (1-\beta_2^t) + \epsilon_{root}}
        + \epsilon}

    with ``hat v_t = v_t``, or with AMSGrad ``hat v_t = max(hat v_{t-1}, v_t)``: the max is taken
    over the raw second moment and bias-corrected afterwards, as in torch.optim.Adam. (optax's
    ``amsgrad`` takes the max of the bias-corrected moment instead; the two differ early on.)

    Args:
      b1, b2: moment decays in [0, 1).
      eps: added to the denominator, outside the root (torch and optax agree).
      eps_root: added inside the root; useful when differentiating through the optimizer.
      amsgrad: keep the running max of the second moment.
      mu_dtype, nu_dtype: dtypes of the moments (for example ``jnp.bfloat16`` to halve memory);
        default: the param's dtype widened to at least float32 (bf16 params get float32
        moments). Math always runs in at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adam(b2=0.99), optix.scale_lr(1e-3))

    Reference: Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015;
    Reddi, Kale & Kumar, "On the convergence of Adam and beyond", ICLR 2018 (AMSGrad).
    """
    _check_betas(b1, b2, eps)
    _validate.check_nonnegative("eps_root", eps_root)
    spec = Hyperparams(b1=b1, b2=b2, eps=eps, eps_root=eps_root)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_adam` params")
        mu, nu = _moments(params, mu_dtype, nu_dtype)
        nu_max = jax.tree.map(jnp.copy, nu) if amsgrad else None  # its own buffers (donation)
        return ScaleByAdamState(spec.init(), mu, nu, nu_max)

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_adam")
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_ = hp["b1"], hp["b2"]
        bc1 = _tree.bias_correction(b1_, hyperparams.count)
        bc2 = _tree.bias_correction(b2_, hyperparams.count)
        # (m / bc1) / (sqrt(v / bc2 + eps_root) + eps) times sqrt(bc2) / sqrt(bc2): the bias
        # corrections move onto scalars computed once per step, and each element pays one
        # division instead of two
        root_bc2 = jnp.sqrt(bc2)
        step_size, eps_root_t, eps_t = root_bc2 / bc1, hp["eps_root"] * bc2, hp["eps"] * root_bc2

        def moments(g, m, v):
            gc = _tree.upcast(g)
            m_new = b1_ * m + (1 - b1_) * gc
            v_new = b2_ * v + (1 - b2_) * _tree.abs_sq(gc)
            return gc, m_new, v_new

        def direction(g, m_new, v_hat):
            u = step_size * m_new / (jnp.sqrt(v_hat + eps_root_t) + eps_t)
            return u.astype(g.dtype)

        def plain(g, m, v):
            gc, m_new, v_new = moments(g, m, v)
            return direction(g, m_new, v_new), m_new.astype(m.dtype), v_new.astype(v.dtype)

        def ams(g, m, v, v_max):
            gc, m_new, v_new = moments(g, m, v)
            v_max_new = jnp.maximum(v_max, v_new)
            out = direction(g, m_new, v_max_new), m_new.astype(m.dtype), v_new.astype(v.dtype)
            return out + (v_max_new.astype(v_max.dtype),)

        if amsgrad:
            trees = (updates, state.mu, state.nu, state.nu_max)
            updates, mu, nu, nu_max = _tree.map_leaves(ams, *trees, n_out=4)
        else:
            (updates, mu, nu), nu_max = (
                _tree.map_leaves(plain, updates, state.mu, state.nu, n_out=3),
                None,
            )
        return updates, ScaleByAdamState(hyperparams, mu, nu, nu_max)

    return mark_elementwise(GradientTransformation(init, update))


class ScaleByAdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`: the first moment and the infinity-norm estimate."""

    hyperparams: HyperparamState  # b1, b2, eps
    mu: Updates  # first moment
    nu: Updates  # exponentially weighted infinity norm


def scale_by_adamax(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    *,
    eps_in_max: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam with the infinity norm in place of the second moment (Adamax).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        u^\infty_t = \max(\beta_2 u^\infty_{t-1}, |g_t| + \epsilon), \quad
        u_t = \frac{m_t}{(1-\beta_1^t)\, u^\infty_t}

    ``eps`` sits inside the max, as in torch.optim.Adamax and optax's ``adamax``.
    ``eps_in_max=False`` instead adds it to the denominator: ``u_inf_t = max(b2 u_inf_{t-1},
    |g_t|)`` and ``u_t = m_hat_t / (u_inf_t + eps)``, which keeps ``eps`` from accumulating in a
    slowly decaying norm.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adamax(), optix.scale_lr(2e-3))

    Reference: Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015, section 7.
    """
    _check_betas(b1, b2, eps)
    spec = Hyperparams(b1=b1, b2=b2, eps=eps)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_adamax` params")
        return ScaleByAdamaxState(spec.init(), *_moments(params, mu_dtype, nu_dtype))

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_adamax")
        hp, hyperparams = spec.step(state.hyperparams)
        bc1 = _tree.bias_correction(hp["b1"], hyperparams.count)

        def leaf(g, m, v):
            gc = _tree.upcast(g)
            m_new = hp["b1"] * m + (1 - hp["b1"]) * gc
            if eps_in_max:
                v_new = jnp.maximum(hp["b2"] * v, jnp.abs(gc) + hp["eps"])
                u = m_new / (bc1 * v_new)
            else:
                v_new = jnp.maximum(hp["b2"] * v, jnp.abs(gc))
                u = (m_new / bc1) / (v_new + hp["eps"])
            return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        updates, mu, nu = _tree.map_leaves(leaf, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByAdamaxState(hyperparams, mu, nu)

    return mark_elementwise(GradientTransformation(init, update))


class ScaleByNadamState(NamedTuple):
    """State of :func:`scale_by_nadam`: the moments and the running product of momentum terms."""

    hyperparams: HyperparamState  # b1, b2, eps, momentum_decay
    mu: Updates
    nu: Updates
    mu_product: jax.Array  # prod_{i<=t} mu_i, a scalar


def scale_by_nadam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    momentum_decay: ScalarOrSchedule = 4e-3,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam with Nesterov momentum and Dozat's momentum-decay schedule (NAdam).

    .. math::
        \mu_t = \beta_1 (1 - \tfrac12 \, 0.96^{t \psi}), \quad
        u_t = \frac{(1-\mu_t)\, g_t}{1 - \prod_{i\le t}\mu_i} \frac{1}{d_t}
        + \frac{\mu_{t+1}\, m_t}{1 - \prod_{i \le t+1}\mu_i} \frac{1}{d_t},
        \quad d_t = \sqrt{v_t / (1-\beta_2^t)} + \epsilon

    with ``m_t`` and ``v_t`` Adam's moments and ``psi = momentum_decay``. This matches the paper and
    torch.optim.NAdam. optax's ``nadam`` is a different, simpler rule (Adam with a Nesterov
    look-ahead on the bias-corrected mean, no momentum schedule).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_nadam(), optix.scale_lr(2e-3))

    Reference: Dozat, "Incorporating Nesterov momentum into Adam", ICLR workshop 2016.
    """
    _check_betas(b1, b2, eps)
    _validate.check_nonnegative("momentum_decay", momentum_decay)
    spec = Hyperparams(b1=b1, b2=b2, eps=eps, momentum_decay=momentum_decay)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_nadam` params")
        mu, nu = _moments(params, mu_dtype, nu_dtype)
        return ScaleByNadamState(spec.init(), mu, nu, jnp.ones([], hyperparam_dtype()))

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_nadam")
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_, psi = hp["b1"], hp["b2"], hp["momentum_decay"]
        t = hyperparams.count.astype(b1_.dtype)
        mu_t = b1_ * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1_ * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_product = state.mu_product * mu_t
        coef_g = (1 - mu_t) / (1 - mu_product)
        coef_m = mu_next / (1 - mu_product * mu_next)
        # the bias correction of v moved onto the scalars (times sqrt(bc2) top and bottom)
        root_bc2 = jnp.sqrt(_tree.bias_correction(b2_, hyperparams.count))
        coef_g, coef_m, eps_t = coef_g * root_bc2, coef_m * root_bc2, hp["eps"] * root_bc2

        def leaf(g, m, v):
            gc = _tree.upcast(g)
            m_new = b1_ * m + (1 - b1_) * gc
            v_new = b2_ * v + (1 - b2_) * _tree.abs_sq(gc)
            u = (coef_g * gc + coef_m * m_new) / (jnp.sqrt(v_new) + eps_t)
            return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        updates, mu, nu = _tree.map_leaves(leaf, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByNadamState(hyperparams, mu, nu, mu_product)

    return mark_elementwise(GradientTransformation(init, update))


class ScaleByRadamState(NamedTuple):
    """State of :func:`scale_by_radam`: the hyperparameters and the two moment estimates."""

    hyperparams: HyperparamState  # b1, b2, eps, threshold
    mu: Updates
    nu: Updates


def _check_radam_threshold(name: str, value: object) -> None:
    """``r_t`` is the square root of a negative number while ``2 < rho_t < 4``, and ``rho_t``
    passes through that range on its way up, so a threshold below 4 always ends in NaN."""
    _validate.check_finite(name, value)
    x = _validate.concrete_float(value)
    if x is not None and x < 4:
        raise ValueError(
            f"`{name}` must be >= 4, got {value!r}: the rectification term r_t is the square root "
            "of a negative number while 2 < rho_t < 4, so the step would be NaN (5 in the paper)"
        )


register_rules(ScaleByRadamState, threshold=_check_radam_threshold)


def scale_by_radam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    threshold: ScalarOrSchedule = 5.0,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam with a rectified adaptive step that is switched off while its variance is unbounded.

    .. math::
        \rho_\infty = \frac{2}{1-\beta_2} - 1, \quad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}, \quad
        u_t = \begin{cases}
          \hat m_t \, r_t \, \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon} & \rho_t > 5 \\
          \hat m_t & \text{otherwise}
        \end{cases}, \quad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    This is torch.optim.RAdam's rule: ``eps`` is added to ``sqrt(v_t)`` before bias correction.
    optax's ``radam`` adds it after (``sqrt(v_hat) + eps``) and uses the threshold the same way.

    Args:
      threshold: the ``rho_t`` above which the adaptive step is used (5 in the paper and torch);
        at least 4, since ``r_t`` is not real for ``2 < rho_t < 4`` (a scheduled value below 4
        acts as 4).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_radam(), optix.scale_lr(1e-3))

    Reference: Liu et al., "On the variance of the adaptive learning rate and beyond", ICLR 2020.
    """
    _check_betas(b1, b2, eps)
    _check_radam_threshold("threshold", threshold)
    spec = Hyperparams(b1=b1, b2=b2, eps=eps, threshold=threshold)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_radam` params")
        return ScaleByRadamState(spec.init(), *_moments(params, mu_dtype, nu_dtype))

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_radam")
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_ = hp["b1"], hp["b2"]
        t = hyperparams.count.astype(b2_.dtype)
        bc1 = _tree.bias_correction(b1_, hyperparams.count)
        bc2 = _tree.bias_correction(b2_, hyperparams.count)
        rho_inf = 2 / (1 - b2_) - 1
        rho_t = rho_inf - 2 * t * b2_**t / bc2
        rectify = (rho_t > hp["threshold"]) & (rho_t > 4)  # r_t is real only for rho_t > 4
        safe_rho = jnp.where(rectify, rho_t, rho_inf)  # keeps the unused branch finite
        r = jnp.sqrt(
            (safe_rho - 4) * (safe_rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * safe_rho)
        )

        # scalars once per step, so each element divides once (by sqrt(v) + eps) at most
        inv_bc1 = 1 / bc1
        adaptive_step = inv_bc1 * r * jnp.sqrt(bc2)

        def leaf(g, m, v):
            gc = _tree.upcast(g)
            m_new = b1_ * m + (1 - b1_) * gc
            v_new = b2_ * v + (1 - b2_) * _tree.abs_sq(gc)
            adaptive = adaptive_step * m_new / (jnp.sqrt(v_new) + hp["eps"])
            u = jnp.where(rectify, adaptive, inv_bc1 * m_new)
            return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        updates, mu, nu = _tree.map_leaves(leaf, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByRadamState(hyperparams, mu, nu)

    return mark_elementwise(GradientTransformation(init, update))
