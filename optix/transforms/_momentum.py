"""Momentum: heavy ball, Nesterov and dampening, as in torch.optim.SGD."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._fusable import mark_elementwise
from optix._hyperparams import Hyperparams, HyperparamState


class ScaleByMomentumState(NamedTuple):
    """State of :func:`scale_by_momentum`: the hyperparameters and the momentum buffer."""

    hyperparams: HyperparamState  # momentum, dampening
    trace: Updates  # the momentum buffer b_t


def scale_by_momentum(
    momentum: ScalarOrSchedule = 0.9,
    *,
    nesterov: bool = False,
    dampening: ScalarOrSchedule = 0.0,
    trace_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Accumulate a momentum buffer (heavy ball), optionally with Nesterov's look-ahead.

    .. math::
        b_1 = g_1, \qquad b_t = \mu b_{t-1} + (1 - \tau) g_t, \qquad
        u_t = \begin{cases} g_t + \mu b_t & \text{Nesterov} \\ b_t & \text{otherwise}\end{cases}

    This is torch.optim.SGD's convention: the first step sets ``b_1 = g_1`` without dampening
    ``tau``. With ``dampening=0`` it equals optax's ``trace``.

    ``dampening=0`` given as a Python number builds no dampening term: ``b_t = g_t + mu b_{t-1}``
    from step 1 on (the buffer starts at zero), the same values at no extra work per leaf, and no
    ``dampening`` in the state. Give a schedule or an array (``jnp.float32(0.0)``) to keep it in
    the state, settable with :func:`optix.set_hyperparams`.

    Args:
      momentum: ``mu`` in [0, 1).
      nesterov: use the Nesterov look-ahead. Requires ``dampening == 0``, as in torch.
      dampening: ``tau`` in [0, 1]: the share of each new gradient that is damped away.
      trace_dtype: dtype of the buffer; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.scale_by_momentum(0.9, nesterov=True), optix.scale_lr(0.1))

    Reference: Polyak, 1964; Sutskever et al., "On the importance of initialization and momentum",
    ICML 2013.
    """
    _validate.check_unit_interval("momentum", momentum)
    _validate.check_closed_unit_interval("dampening", dampening)
    if nesterov and _validate.concrete_float(dampening) not in (None, 0.0):
        raise ValueError("`nesterov=True` requires `dampening=0`, as in torch.optim.SGD")
    # Nesterov needs dampening = 0, so it keeps none in state (set_hyperparams cannot break it);
    # a literal 0 keeps none either: the term would cost two scalar operands per leaf kernel.
    damped = not nesterov and not (isinstance(dampening, int | float) and dampening == 0)
    spec = Hyperparams(momentum=momentum, **({"dampening": dampening} if damped else {}))

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_momentum` params")
        return ScaleByMomentumState(
            spec.init(), _tree.moments_like(params, trace_dtype, name="trace_dtype")
        )

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.trace, "scale_by_momentum")
        first = state.hyperparams.count == 0
        hp, hyperparams = spec.step(state.hyperparams)
        mu = hp["momentum"]
        # The buffer starts at zero, so step 1 only needs the gradient's coefficient switched to 1
        # (a scalar select, not a per-element one); undamped, it is 1 at every step.
        coef = jnp.where(first, 1, 1 - hp["dampening"]) if damped else 1

        def leaf(g, b):
            gc = _tree.upcast(g)
            b_new = mu * b + coef * gc if damped else gc + mu * b
            u = gc + mu * b_new if nesterov else b_new
            return u.astype(g.dtype), b_new.astype(b.dtype)

        updates, trace = _tree.map_leaves(leaf, updates, state.trace, n_out=2)
        return updates, ScaleByMomentumState(hyperparams, trace)

    return mark_elementwise(GradientTransformation(init, update))
