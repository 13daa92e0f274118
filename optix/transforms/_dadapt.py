"""D-Adaptation and Prodigy: Adam whose step size is estimated from the distance travelled.

Both keep a scalar estimate ``d`` of the distance from the initial params to a solution and grow
it from sums over all leaves. Those sums (dot products, L1 norms) are accumulated in the
hyperparameter precision (float32, or float64 under x64), whatever the params' dtype. Both
transforms produce the final step (they scale by ``-d * learning_rate`` themselves), so they end
a chain the way :func:`optix.scale_lr` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from optix import _hyperparams, _paths, _tree, _validate
from optix._base import GradientTransformation, Params, ScalarOrSchedule, Updates
from optix._fusable import mark_elementwise
from optix._hyperparams import Hyperparams, HyperparamState, hyperparam_dtype

Mask = Any | Callable[[Params], Any] | None


def _total(fn: Callable[..., jax.Array], *trees: Any) -> jax.Array:
    """``sum over leaves of fn(leaf, ...)``, accumulated in the hyperparameter precision."""
    parts = jax.tree.leaves(_tree.map_leaves(fn, *trees))
    dt = hyperparam_dtype()
    return sum((jnp.sum(x).astype(dt) for x in parts), jnp.zeros([], dt))


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """Real part of ``<a, b>`` for one leaf, upcast."""
    a, b = _tree.upcast(a), _tree.upcast(b)
    return jnp.real(jnp.conj(a) * b) if jnp.iscomplexobj(a) or jnp.iscomplexobj(b) else a * b


def _l1(s: jax.Array) -> jax.Array:
    return jnp.abs(_tree.upcast(s))


def _bias_correction(hp: dict[str, jax.Array], count: jax.Array, on: bool) -> jax.Array:
    """Adam's ``sqrt(1 - b2^t) / (1 - b1^t)``, folded into the step size (1 when off)."""
    if not on:
        return jnp.ones([], hyperparam_dtype())
    bc1 = _tree.bias_correction(hp["b1"], count)
    return jnp.sqrt(_tree.bias_correction(hp["b2"], count)) / bc1


def _decay_masks(mask: Mask, params: Params, what: str) -> Any:
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    return _paths.resolve(mask, params, what)


def _check_common(
    learning_rate: Any, b1: Any, b2: Any, eps: Any, estim_lr0: Any, weight_decay: Any
) -> None:
    _validate.check_nonnegative("learning_rate", learning_rate)
    _validate.check_unit_interval("b1", b1)
    _validate.check_unit_interval("b2", b2)
    _validate.check_nonnegative("eps", eps)
    _validate.check_positive("estim_lr0", estim_lr0)
    _validate.check_nonnegative("weight_decay", weight_decay)
    if callable(estim_lr0):
        raise TypeError("`estim_lr0` must be a number: it is the initial estimate, not a schedule")


class ScaleByProdigyState(NamedTuple):
    """State of :func:`scale_by_prodigy`: Adam's moments, the weighted gradient sum and ``d``."""

    hyperparams: HyperparamState  # learning_rate, b1, b2, beta3, eps, estim_lr0, ...; count is t
    mu: Updates  # first moment of d * g
    nu: Updates  # second moment of d * g
    s: Updates  # the weighted sum of gradients in the denominator of the d estimate
    params0: Params  # the initial params x_0
    d: jax.Array  # the distance estimate (the "estimated learning rate")
    numerator: jax.Array  # the weighted sum of <g_k, x_0 - x_k> in the numerator


def scale_by_prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    beta3: ScalarOrSchedule | None = None,
    eps: ScalarOrSchedule = 1e-8,
    estim_lr0: ArrayLike = 1e-6,
    estim_lr_coef: ScalarOrSchedule = 1.0,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    mask: Mask = None,
    safeguard_warmup: bool = False,
    bias_correction: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """The Prodigy step (see :func:`optix.prodigy`); it includes ``-learning_rate``.

    Example:
      >>> import optix
      >>> tx = optix.scale_by_prodigy(learning_rate=1.0, weight_decay=1e-2)

    Reference: Mishchenko & Defazio, "Prodigy: an expeditiously adaptive parameter-free
    learner", ICML 2024.
    """
    _check_common(learning_rate, b1, b2, eps, estim_lr0, weight_decay)
    _validate.check_nonnegative("estim_lr_coef", estim_lr_coef)
    specs = dict(b1=b1, b2=b2, eps=eps, estim_lr0=estim_lr0, estim_lr_coef=estim_lr_coef)
    if beta3 is not None:
        _validate.check_unit_interval("beta3", beta3)
        specs["beta3"] = beta3
    spec = Hyperparams(learning_rate=learning_rate, weight_decay=weight_decay, **specs)

    def init(params):
        _validate.check_float_leaves(params, "`prodigy` params")
        _decay_masks(mask, params, "`prodigy` mask")
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")
        hyperparams = spec.init()
        d = jnp.copy(hyperparams.values["estim_lr0"])  # a number, never a schedule
        # copies: no state leaf may share a buffer with the params or another leaf (donation)
        params0, s = jax.tree.map(jnp.copy, params), jax.tree.map(jnp.copy, mu)
        return ScaleByProdigyState(hyperparams, mu, nu, s, params0, d, jnp.zeros_like(d))

    def update(updates, state, params=None, **extra):
        del extra
        _validate.require_params(params, "prodigy")
        _validate.check_updates(updates, state.mu, "prodigy")
        _validate.check_matches_params(updates, params)
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_, d, d0 = hp["b1"], hp["b2"], state.d, hp["estim_lr0"]
        beta3_ = hp["beta3"] if beta3 is not None else jnp.sqrt(b2_)
        dlr = d * hp["learning_rate"] * _bias_correction(hp, hyperparams.count, bias_correction)
        s_coef = (d / d0) * (d if safeguard_warmup else dlr)
        progress = _total(
            lambda g, p0, p: _dot(g, _tree.upcast(p0) - _tree.upcast(p)),
            updates,
            state.params0,
            params,
        )
        numerator = beta3_ * state.numerator + (d / d0) * dlr * progress

        def moments(g, m, v, s):
            gc = _tree.upcast(g)
            m_new = b1_ * m + (1 - b1_) * d * gc
            v_new = b2_ * v + (1 - b2_) * d * d * _tree.abs_sq(gc)
            s_new = beta3_ * s + s_coef * gc
            return m_new.astype(m.dtype), v_new.astype(v.dtype), s_new.astype(s.dtype)

        mu, nu, s = _tree.map_leaves(moments, updates, state.mu, state.nu, state.s, n_out=3)
        denominator = _total(_l1, s)
        positive = denominator > 0
        estimate = hp["estim_lr_coef"] * numerator / jnp.where(positive, denominator, 1)
        d_new = jnp.where(positive, jnp.maximum(d, estimate), d)
        masks = _decay_masks(mask, params, "`prodigy` mask")

        def step(g, m, v, p, decay):
            wd = jnp.where(decay, hp["weight_decay"], 0)
            u = m / (jnp.sqrt(v) + d_new * hp["eps"]) + wd * _tree.upcast(p)
            return (-dlr * u).astype(g.dtype)

        steps = _tree.map_leaves(step, updates, mu, nu, params, masks)
        new_state = ScaleByProdigyState(hyperparams, mu, nu, s, state.params0, d_new, numerator)
        return steps, new_state

    tx = GradientTransformation(init, update)
    # Its sums run over all leaves at once, so packing leaves end to end changes nothing.
    return mark_elementwise(tx) if mask is None else tx


class ScaleByDadaptAdamState(NamedTuple):
    """State of :func:`scale_by_dadapt_adam`: Adam's moments, the gradient sum and ``d``."""

    hyperparams: HyperparamState  # learning_rate, b1, b2, eps, weight_decay; count is t
    mu: Updates  # first moment of d * lr * g
    nu: Updates  # second moment of g
    s: Updates  # exponentially weighted sum of d * lr * g
    d: jax.Array  # the distance estimate
    numerator: jax.Array  # the weighted sum of d * lr * <g_k, s_k / (sqrt(v_k) + eps)>


def scale_by_dadapt_adam(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    estim_lr0: ArrayLike = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    mask: Mask = None,
    bias_correction: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """The D-Adapt Adam step (see :func:`optix.dadapt_adamw`); it includes ``-learning_rate``.

    Example:
      >>> import optix
      >>> tx = optix.scale_by_dadapt_adam(learning_rate=1.0)

    Reference: Defazio & Mishchenko, "Learning-rate-free learning by D-Adaptation", ICML 2023.
    """
    _check_common(learning_rate, b1, b2, eps, estim_lr0, weight_decay)
    spec = Hyperparams(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay
    )

    def init(params):
        _validate.check_float_leaves(params, "`dadapt_adamw` params")
        _decay_masks(mask, params, "`dadapt_adamw` mask")
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")
        d = jnp.asarray(estim_lr0, hyperparam_dtype())
        s = jax.tree.map(jnp.copy, mu)  # its own buffers (a donated state must not alias)
        return ScaleByDadaptAdamState(spec.init(), mu, nu, s, d, jnp.zeros_like(d))

    def update(updates, state, params=None, **extra):
        del extra
        _validate.require_params(params, "dadapt_adamw")
        _validate.check_updates(updates, state.mu, "dadapt_adamw")
        _validate.check_matches_params(updates, params)
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_, eps_, d = hp["b1"], hp["b2"], hp["eps"], state.d
        sb2 = jnp.sqrt(b2_)
        dlr = d * hp["learning_rate"] * _bias_correction(hp, hyperparams.count, bias_correction)
        progress = _total(
            lambda g, s, v: _dot(g, s / (jnp.sqrt(v) + eps_)), updates, state.s, state.nu
        )
        numerator = sb2 * state.numerator + (1 - sb2) * dlr * progress

        def moments(g, m, v, s):
            gc = _tree.upcast(g)
            m_new = b1_ * m + (1 - b1_) * dlr * gc
            v_new = b2_ * v + (1 - b2_) * _tree.abs_sq(gc)
            s_new = sb2 * s + (1 - sb2) * dlr * gc
            return m_new.astype(m.dtype), v_new.astype(v.dtype), s_new.astype(s.dtype)

        mu, nu, s = _tree.map_leaves(moments, updates, state.mu, state.nu, state.s, n_out=3)
        l1 = _total(_l1, s)
        positive = l1 > 0
        estimate = numerator / ((1 - sb2) * jnp.where(positive, l1, 1))
        d_new = jnp.where(positive, jnp.maximum(d, estimate), d)
        masks = _decay_masks(mask, params, "`dadapt_adamw` mask")

        def step(g, m, v, p, decay):
            wd = jnp.where(decay, hp["weight_decay"], 0)
            u = m / (jnp.sqrt(v) + eps_) + wd * dlr * _tree.upcast(p)
            return (-u).astype(g.dtype)

        steps = _tree.map_leaves(step, updates, mu, nu, params, masks)
        return steps, ScaleByDadaptAdamState(hyperparams, mu, nu, s, d_new, numerator)

    tx = GradientTransformation(init, update)
    # Its sums run over all leaves at once, so packing leaves end to end changes nothing.
    return mark_elementwise(tx) if mask is None else tx


_hyperparams.register_rules(
    ScaleByProdigyState,
    beta3=_validate.check_unit_interval,
    estim_lr0=_validate.check_positive,
    estim_lr_coef=_validate.check_nonnegative,
)
