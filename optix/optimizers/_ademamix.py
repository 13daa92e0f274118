r"""AdEMAMix: Adam with a second, slow momentum mixed into the numerator, and its warmups.

Reference: Pagliardini, Ablin & Grangier, `The AdEMAMix optimizer: better, faster, older
<https://arxiv.org/abs/2409.03137>`_, 2024.
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
from optix._base import ScalarOrSchedule
from optix._base import Schedule
from optix._base import Updates
from optix._chain import chain
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None


class ScaleByAdemamixState(NamedTuple):
    """State of :func:`scale_by_ademamix`: a fast and a slow momentum, and the second moment."""

    hyperparams: HyperparamState  # b1, b2, b3, alpha, eps, eps_root
    m1: Updates  # fast EMA of gradients (decay b1), bias-corrected when used
    m2: Updates  # slow EMA of gradients (decay b3), used without bias correction
    nu: Updates  # EMA of |g|^2 (decay b2)


@transform(ScaleByAdemamixState)
def scale_by_ademamix(
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    b3: Beta = 0.9999,
    alpha: NonNegative = 5.0,
    eps: NonNegative = 1e-8,
    eps_root: NonNegative = 0.0,
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

    Reference: Pagliardini, Ablin & Grangier, `The AdEMAMix optimizer: better, faster, older
    <https://arxiv.org/abs/2409.03137>`_, 2024, Algorithm 1.
    """

    def init(params):
        m1 = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        m2 = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")
        return m1, m2, nu

    def rule(h):
        b1, b2, b3, alpha, eps, eps_root = h.b1, h.b2, h.b3, h.alpha, h.eps, h.eps_root
        # bias corrections divided out once per step: a multiply per element, not a division
        c1 = 1 / _tree.bias_correction(b1, h.t)
        c2 = 1 / _tree.bias_correction(b2, h.t)

        def ademamix(g, m1, m2, nu):
            m1 = b1 * m1 + (1 - b1) * g
            m2 = b3 * m2 + (1 - b3) * g
            nu = b2 * nu + (1 - b2) * _tree.abs_sq(g)
            return (
                (m1 * c1 + alpha * m2) / (_tree.sqrt_flat_at_zero(nu * c2 + eps_root) + eps),
                m1,
                m2,
                nu,
            )

        return ademamix

    spec = Hyperparams(b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, eps_root=eps_root)
    return per_leaf("scale_by_ademamix", ScaleByAdemamixState, spec, init=init, rule=rule)


def _constant(name: str, value: ScalarOrSchedule) -> ArrayLike:
    if callable(value):
        raise TypeError(f"the AdEMAMix warmups need a constant `{name}`, got a schedule")
    return value


def alpha_warmup(
    alpha: ScalarOrSchedule, warmup_steps: int, *, steps_name: str = "warmup_steps"
) -> Schedule:
    r"""The paper's linear warmup of ``alpha``: ``alpha_t = min(t / T, 1) alpha``.

    ``steps_name`` is the name errors give ``warmup_steps`` (the caller's argument name, such as
    ``alpha_warmup_steps`` in :func:`optix.ademamix`).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.ademamix(1e-3, alpha=8.0, alpha_warmup_steps=100)  # uses this schedule
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> for _ in range(26):  # the 26th update is made at t = 25
      ...     _, state = tx.update(jnp.ones(2), state, params)
      >>> float(optix.get_hyperparams(state)["alpha"])
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
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.ademamix(1e-3, b1=0.9, b3=0.9999, b3_warmup_steps=4)  # uses this schedule
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> round(float(optix.get_hyperparams(state)["b3"]), 6)  # b3(0) = b1
      0.9
      >>> for _ in range(5):  # the 5th update is made at t = 4 = T
      ...     _, state = tx.update(jnp.ones(2), state, params)
      >>> round(float(optix.get_hyperparams(state)["b3"]), 6)
      0.9999
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


@checked
def ademamix(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    b3: Beta = 0.9999,
    alpha: NonNegative = 5.0,
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 0.0,
    mask: Mask = None,
    *,
    alpha_warmup_steps: int | None = None,
    b3_warmup_steps: int | None = None,
    eps_root: NonNegative = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdEMAMix: AdamW with a very slow second momentum added to the numerator.

    .. math::
        \theta_t = \theta_{t-1} - \eta \Big(
        \frac{\hat m^{(1)}_t + \alpha\, m^{(2)}_t}{\sqrt{\hat\nu_t} + \epsilon}
        + \lambda \theta_{t-1}\Big)

    It is ``chain(scale_by_ademamix(...), add_decayed_weights(weight_decay, mask),
    scale_lr(learning_rate))`` (see :func:`scale_by_ademamix`): the decoupled weight decay is
    multiplied by the learning rate, as in :func:`adamw` and optax.contrib's ``ademamix``, which
    this matches.

    The paper warms ``alpha`` and ``b3`` up over ``T`` steps (usually the whole run):
    ``alpha_warmup_steps=T`` grows ``alpha`` linearly from 0, and ``b3_warmup_steps=T`` grows the
    half-life of the slow EMA linearly from that of ``b1`` to that of ``b3``. Both need constant
    ``alpha``, ``b1`` and ``b3``; without them (the default, as in optax) both are constant.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2, b3: decays of the fast EMA, the second moment and the slow EMA.
      alpha: weight of the slow EMA (a number or a schedule).
      alpha_warmup_steps, b3_warmup_steps: lengths of the paper's warmups, or None.
      eps: added outside the root; eps_root: inside it.
      weight_decay: decoupled decay ``lambda`` >= 0.
      mask: which params decay (see :func:`adamw`).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.ademamix(1e-3, weight_decay=0.1, alpha_warmup_steps=10_000, b3_warmup_steps=10_000)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Pagliardini, Ablin & Grangier, `The AdEMAMix optimizer: better, faster, older
    <https://arxiv.org/abs/2409.03137>`_, 2024.
    """
    if alpha_warmup_steps is not None:
        alpha = alpha_warmup(alpha, alpha_warmup_steps, steps_name="alpha_warmup_steps")
    if b3_warmup_steps is not None:
        b3 = b3_warmup(b3, b3_warmup_steps, b1, steps_name="b3_warmup_steps")
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
