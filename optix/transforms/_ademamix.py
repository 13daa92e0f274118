"""AdEMAMix: Adam with a second, slow momentum mixed into the numerator, and its warmups."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Schedule, Updates
from optix._fusable import mark_elementwise
from optix._hyperparams import Hyperparams, HyperparamState, hyperparam_dtype, register_rules


class ScaleByAdemamixState(NamedTuple):
    """State of :func:`scale_by_ademamix`: a fast and a slow momentum, and the second moment."""

    hyperparams: HyperparamState  # b1, b2, b3, alpha, eps, eps_root; count is t
    m1: Updates  # fast EMA of gradients (decay b1), bias-corrected when used
    m2: Updates  # slow EMA of gradients (decay b3), used without bias correction
    nu: Updates  # EMA of |g|^2 (decay b2)


def scale_by_ademamix(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Mix a fast and a very slow gradient EMA over Adam's denominator (AdEMAMix).

    .. math::
        m^{(1)}_t = \beta_1 m^{(1)}_{t-1} + (1-\beta_1) g_t, \quad
        m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1-\beta_3) g_t, \quad
        \nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) |g_t|^2, \\
        u_t = \frac{m^{(1)}_t / (1-\beta_1^t) + \alpha\, m^{(2)}_t}
        {\sqrt{\nu_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    The slow EMA is not bias-corrected, so it fills slowly (the paper's Algorithm 1, and
    optax.contrib's ``scale_by_ademamix``). ``b3`` and ``alpha`` may be schedules (see
    :func:`optix.ademamix` for the paper's warmups).

    Args:
      b1, b2, b3: decays in [0, 1) of the fast EMA, the second moment and the slow EMA.
      alpha: weight >= 0 of the slow EMA.
      eps, eps_root: added outside and inside the root.
      mu_dtype: dtype of both momenta; nu_dtype: of the second moment. Default: the param's.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_ademamix(), optix.scale_lr(1e-3))

    Reference: Pagliardini, Ablin & Grangier, "The AdEMAMix optimizer: better, faster, older",
    2024 (arXiv:2409.03137), Algorithm 1.
    """
    for name, value in (("b1", b1), ("b2", b2), ("b3", b3)):
        _validate.check_unit_interval(name, value)
    for name, value in (("alpha", alpha), ("eps", eps), ("eps_root", eps_root)):
        _validate.check_nonnegative(name, value)
    spec = Hyperparams(b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, eps_root=eps_root)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_ademamix` params")
        m1 = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        m2 = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")
        return ScaleByAdemamixState(spec.init(), m1, m2, nu)

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.m1, "scale_by_ademamix")
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_, b3_ = hp["b1"], hp["b2"], hp["b3"]
        # bias corrections divided out once per step: a multiply per element, not a division
        c1 = 1 / _tree.bias_correction(b1_, hyperparams.count)
        c2 = 1 / _tree.bias_correction(b2_, hyperparams.count)

        def leaf(g, m1, m2, v):
            gc = _tree.upcast(g)
            m1_new = b1_ * m1 + (1 - b1_) * gc
            m2_new = b3_ * m2 + (1 - b3_) * gc
            v_new = b2_ * v + (1 - b2_) * _tree.abs_sq(gc)
            denom = jnp.sqrt(v_new * c2 + hp["eps_root"]) + hp["eps"]
            u = (m1_new * c1 + hp["alpha"] * m2_new) / denom
            out = u.astype(g.dtype), m1_new.astype(m1.dtype), m2_new.astype(m2.dtype)
            return out + (v_new.astype(v.dtype),)

        trees = (updates, state.m1, state.m2, state.nu)
        updates, m1, m2, nu = _tree.map_leaves(leaf, *trees, n_out=4)
        return updates, ScaleByAdemamixState(hyperparams, m1, m2, nu)

    return mark_elementwise(GradientTransformation(init, update))


register_rules(
    ScaleByAdemamixState, b3=_validate.check_unit_interval, alpha=_validate.check_nonnegative
)


def _constant(name: str, value: ScalarOrSchedule) -> ArrayLike:
    if callable(value):
        raise TypeError(f"the AdEMAMix warmups need a constant `{name}`, got a schedule")
    return value


def alpha_warmup(
    alpha: ScalarOrSchedule, warmup_steps: int, *, steps_name: str = "warmup_steps"
) -> Schedule:
    """The paper's linear warmup of ``alpha``: ``alpha_t = min(t / T, 1) alpha``.

    ``steps_name`` is the name errors give ``warmup_steps`` (the caller's argument name, such as
    ``alpha_warmup_steps`` in :func:`optix.ademamix`).

    Example:
      >>> import jax.numpy as jnp
      >>> from optix.transforms._ademamix import alpha_warmup
      >>> float(alpha_warmup(8.0, 100)(jnp.asarray(25)))
      2.0
    """
    alpha = _constant("alpha", alpha)
    _validate.check_nonnegative("alpha", alpha)
    _validate.check_int(steps_name, warmup_steps, minimum=1)

    def schedule(count: ArrayLike) -> jax.Array:
        t = jnp.asarray(count, hyperparam_dtype())
        return jnp.minimum(t / warmup_steps, 1.0) * jnp.asarray(alpha, hyperparam_dtype())

    return schedule


def b3_warmup(
    b3: ScalarOrSchedule,
    warmup_steps: int,
    b_start: ScalarOrSchedule,
    *,
    steps_name: str = "warmup_steps",
) -> Schedule:
    r"""The paper's warmup of ``b3`` from ``b_start`` (its ``b1``): the half-life of the slow EMA,
    ``ln(0.5) / ln(b)``, grows linearly in ``t`` until it reaches that of ``b3`` at ``t = T``.
    ``steps_name`` is the name errors give ``warmup_steps`` (``b3_warmup_steps`` in
    :func:`optix.ademamix`).

    .. math::
        \beta_3(t) = \exp\Big(\frac{\ln \beta_{start} \ln \beta_3}
        {(1 - t/T) \ln \beta_3 + (t/T) \ln \beta_{start}}\Big), \quad t \le T

    Example:
      >>> import jax.numpy as jnp
      >>> from optix.transforms._ademamix import b3_warmup
      >>> s = b3_warmup(0.9999, 1000, 0.9)
      >>> round(float(s(jnp.asarray(0))), 6), round(float(s(jnp.asarray(5000))), 6)
      (0.9, 0.9999)
    """
    b3, b_start = _constant("b3", b3), _constant("b1", b_start)
    _validate.check_open_unit_interval("b3", b3)
    _validate.check_open_unit_interval("b1", b_start)
    _validate.check_int(steps_name, warmup_steps, minimum=1)

    def schedule(count: ArrayLike) -> jax.Array:
        dtype = hyperparam_dtype()
        log_start = jnp.log(jnp.asarray(b_start, dtype))
        log_end = jnp.log(jnp.asarray(b3, dtype))
        frac = jnp.minimum(jnp.asarray(count, dtype) / warmup_steps, 1.0)
        return jnp.exp(log_start * log_end / ((1 - frac) * log_end + frac * log_start))

    return schedule
