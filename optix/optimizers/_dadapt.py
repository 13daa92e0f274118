r"""D-Adapt AdamW: Adam whose step size is estimated from the distance travelled, and the sums
over all leaves that it shares with Prodigy (:mod:`optix.optimizers._prodigy`).

Reference: Defazio & Mishchenko, `Learning-rate-free learning by D-Adaptation
<https://arxiv.org/abs/2301.07733>`_, ICML 2023.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jax.typing import DTypeLike

from optix import _paths
from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._fusable import mark_elementwise
from optix._hyperparams import Values
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import Range
from optix.toolkit import first_and_second_moments
from optix.toolkit import transform

Mask = Any | Callable[[Params], Any] | None
"""Which params decay: a pytree of bools, a function ``params -> pytree of bools``, or None."""

InitialEstimate = Annotated[ArrayLike, Range(_validate.check_positive)]
"""The initial (under-)estimate ``d_0`` > 0 of the distance to a solution: a number, not a
schedule."""


def check_initial_estimate(estim_lr0: Any) -> None:
    """``estim_lr0`` seeds the state once, so a schedule has nothing to act on."""
    if callable(estim_lr0):
        raise TypeError("`estim_lr0` must be a number: it is the initial estimate, not a schedule")


def total(fn: Callable[..., jax.Array], *trees: Any) -> jax.Array:
    """``sum over leaves of fn(leaf, ...)``, accumulated in the hyperparameter precision."""
    parts = jax.tree.leaves(_tree.map_leaves(fn, *trees))
    dt = hyperparam_dtype()
    return sum((jnp.sum(x).astype(dt) for x in parts), jnp.zeros([], dt))


def real_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """Real part of ``<a, b>`` for one leaf, upcast."""
    a, b = _tree.upcast(a), _tree.upcast(b)
    return jnp.real(jnp.conj(a) * b) if jnp.iscomplexobj(a) or jnp.iscomplexobj(b) else a * b


def l1(s: jax.Array) -> jax.Array:
    """``|s|`` for one leaf, upcast (summed by :func:`total` into an L1 norm)."""
    return jnp.abs(_tree.upcast(s))


def adam_correction(h: Values, on: bool) -> jax.Array:
    """Adam's ``sqrt(1 - b2^t) / (1 - b1^t)``, folded into the step size (1 when off)."""
    if not on:
        return jnp.ones([], hyperparam_dtype())
    bc1 = _tree.bias_correction(h.b1, h.t)
    return jnp.sqrt(_tree.bias_correction(h.b2, h.t)) / bc1


def adam_moments(
    params: Params, mask: Mask, mu_dtype: DTypeLike | None, nu_dtype: DTypeLike | None, name: str
) -> tuple[Any, Any]:
    """Zero Adam moments for D-Adapt AdamW and Prodigy, once float params and the decay ``mask``
    are checked (errors naming ``name``)."""
    _validate.check_float_leaves(params, f"`{name}` params")
    decay_masks(mask, params, f"`{name}` mask")
    return first_and_second_moments(params, mu_dtype, nu_dtype)


def check_step_inputs(updates: Updates, mu: Updates, params: Params, name: str) -> None:
    """The inputs of a step that reads the params: ``params`` given, and ``updates`` matching the
    state's first moment ``mu`` and the params (errors naming ``name``)."""
    _validate.require_params(params, name)
    _validate.check_updates(updates, mu, name)
    _validate.check_matches_params(updates, params)


def decay_masks(mask: Mask, params: Params, what: str) -> Any:
    """The pytree of bools saying which params decay (all of them when ``mask`` is None)."""
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    return _paths.resolve(mask, params, what)


class ScaleByDadaptAdamState(NamedTuple):
    """State of :func:`dadapt_adamw`: Adam's moments, the gradient sum and ``d``."""

    hyperparams: HyperparamState  # learning_rate, b1, b2, eps, weight_decay; count is t
    mu: Updates  # first moment of d * lr * g
    nu: Updates  # second moment of g
    s: Updates  # exponentially weighted sum of d * lr * g
    d: jax.Array  # the distance estimate
    numerator: jax.Array  # the weighted sum of d * lr * <g_k, s_k / (sqrt(v_k) + eps)>


@transform(ScaleByDadaptAdamState)
def dadapt_adamw(
    learning_rate: NonNegative = 1.0,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    estim_lr0: InitialEstimate = 1e-6,
    weight_decay: NonNegative = 0.0,
    *,
    mask: Mask = None,
    bias_correction: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""D-Adapt AdamW: Adam whose step size ``d`` is estimated by D-Adaptation.

    .. math::
        \eta_t = d_t \, \mathrm{lr}_t \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}, \quad
        r_t = \sqrt{\beta_2}\, r_{t-1} + (1-\sqrt{\beta_2})\, \eta_t
        \Bigl\langle g_t, \frac{s_{t-1}}{\sqrt{v_{t-1}} + \epsilon} \Bigr\rangle,

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) \eta_t g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        s_t = \sqrt{\beta_2}\, s_{t-1} + (1-\sqrt{\beta_2})\, \eta_t g_t,

    .. math::
        d_{t+1} = \max\Bigl(d_t, \frac{r_t}{(1-\sqrt{\beta_2}) \lVert s_t \rVert_1}\Bigr),
        \quad x_{t+1} = x_t - \frac{m_t}{\sqrt{v_t} + \epsilon} - \lambda \eta_t x_t

    with the inner product and norm over all leaves together (accumulated in float32 or wider).
    The ``learning_rate`` multiplies the estimated step (keep it 1, or a schedule starting at 1).
    Matches ``optax.contrib.dadapt_adamw`` (the authors' ``DAdaptAdam`` with decoupled decay and
    bias correction). As for :func:`optix.prodigy`, ``d`` is kept while ``||s_t||_1 = 0``, where
    optax produces NaN; ``bias_correction=False`` is the authors' default.

    Like :func:`optix.prodigy`, it returns the whole step ``x_{t+1} - x_t`` (sign and learning
    rate included), since the learning rate weights each gradient inside ``m_t`` and ``s_t``:
    chain clipping and other gradient transforms before it, never a rescaling after it.

    Args:
      learning_rate: multiplier of the estimated step (>= 0), or a schedule.
      b1, b2: Adam's moment decays in [0, 1).
      eps: added to the root of the second moment.
      estim_lr0: the initial (under-)estimate ``d_0`` > 0.
      weight_decay: ``lambda`` >= 0, decoupled, scaled by ``eta_t``.
      mask: which params decay (a pytree of bools or a function of the params).
      bias_correction: fold Adam's bias correction into ``eta_t``.
      mu_dtype, nu_dtype: dtypes of the moments (``mu_dtype`` also for ``s``).

    Returns:
      A transform whose updates are steps (add them with :func:`optix.apply_updates`); its
      ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.dadapt_adamw(weight_decay=1e-4)
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)

    Reference: Defazio & Mishchenko, `Learning-rate-free learning by D-Adaptation
    <https://arxiv.org/abs/2301.07733>`_, ICML 2023.
    """
    check_initial_estimate(estim_lr0)
    spec = Hyperparams(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay
    )

    def init(params):
        mu, nu = adam_moments(params, mask, mu_dtype, nu_dtype, "dadapt_adamw")
        d = jnp.asarray(estim_lr0, hyperparam_dtype())
        s = jax.tree.map(jnp.copy, mu)  # its own buffers (a donated state must not alias)
        return ScaleByDadaptAdamState(spec.init(), mu, nu, s, d, jnp.zeros_like(d))

    def update(updates, state, params=None, **extra):
        del extra
        check_step_inputs(updates, state.mu, params, "dadapt_adamw")
        h, hyperparams = spec.step(state.hyperparams)
        b1, b2, eps, d = h.b1, h.b2, h.eps, state.d
        sb2 = jnp.sqrt(b2)
        dlr = d * h.learning_rate * adam_correction(h, bias_correction)
        progress = total(
            lambda g, s, v: real_dot(g, s / (_tree.sqrt_flat_at_zero(v) + eps)),
            updates,
            state.s,
            state.nu,
        )
        numerator = sb2 * state.numerator + (1 - sb2) * dlr * progress

        # Two passes, not leafwise's one (g, *state) -> (u, *new_state): the step reads the
        # params and the decay mask, which are not state, and the moments as stored (in
        # mu_dtype / nu_dtype), so the casts are written here.
        def moments(g, m, v, s):
            gc = _tree.upcast(g)
            m_new = b1 * m + (1 - b1) * dlr * gc
            v_new = b2 * v + (1 - b2) * _tree.abs_sq(gc)
            s_new = sb2 * s + (1 - sb2) * dlr * gc
            return m_new.astype(m.dtype), v_new.astype(v.dtype), s_new.astype(s.dtype)

        mu, nu, s = _tree.map_leaves(moments, updates, state.mu, state.nu, state.s, n_out=3)
        norm = total(l1, s)
        positive = norm > 0
        estimate = numerator / ((1 - sb2) * jnp.where(positive, norm, 1))
        d_new = jnp.where(positive, jnp.maximum(d, estimate), d)
        masks = decay_masks(mask, params, "`dadapt_adamw` mask")

        def step(g, m, v, p, decay):
            wd = jnp.where(decay, h.weight_decay, 0)
            u = m / (_tree.sqrt_flat_at_zero(v) + eps) + wd * dlr * _tree.upcast(p)
            return (-u).astype(g.dtype)

        steps = _tree.map_leaves(step, updates, mu, nu, params, masks)
        return steps, ScaleByDadaptAdamState(hyperparams, mu, nu, s, d_new, numerator)

    tx = GradientTransformation(init, update)
    # Its sums run over all leaves at once, so packing leaves end to end changes nothing.
    return mark_elementwise(tx) if mask is None else tx
