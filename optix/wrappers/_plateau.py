"""Reduce on plateau: shrink the step when the monitored loss stops improving."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _validate
from optix._base import GradientTransformation
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import OpenFraction
from optix.toolkit import multiply
from optix.toolkit import transform


class ReduceOnPlateauState(NamedTuple):
    """State of :func:`reduce_on_plateau`: the scale, the best value and the plateau counters."""

    hyperparams: HyperparamState  # values: factor, rtol, atol, min_scale; scheduled: scale
    best: jax.Array  # lowest evaluated (averaged) value so far; +inf before the first evaluation
    plateau_count: jax.Array  # int32 consecutive evaluations without improvement
    cooldown_count: jax.Array  # int32 evaluations of cooldown left
    value_sum: jax.Array  # sum of the values of the current accumulation window
    value_count: jax.Array  # int32 values in the current window, in [0, accumulation_size)


@transform(ReduceOnPlateauState)
def reduce_on_plateau(
    factor: OpenFraction = 0.1,
    patience: int = 10,
    cooldown: int = 0,
    rtol: NonNegative = 1e-4,
    atol: NonNegative = 0.0,
    min_scale: NonNegative = 0.0,
    accumulation_size: int = 1,
) -> GradientTransformation:
    r"""Multiply updates by a scale that is cut by ``factor`` whenever the loss plateaus.

    ``update(updates, state, params, value=loss)`` reads the monitored loss (``chain`` forwards
    ``value=`` to its members). Every ``accumulation_size`` updates, the mean ``v`` of the values
    seen since the last evaluation is compared with the best mean so far:

    .. math::
        \text{improved} \iff v < b - (r_{tol} |b| + a_{tol}), \qquad
        s \leftarrow \max(f s, s_{min}) \text{ after } p \text{ evaluations without improvement}

    The margin uses ``|b|``, so the rule is right for negative losses too. An improvement sets
    ``b = v`` and restarts the count; when ``patience`` consecutive evaluations bring none (and no
    cooldown is running), the scale is multiplied by ``factor`` (never below ``min_scale``, never
    raised) and the next ``cooldown`` evaluations do not count as bad ones. The new scale applies to
    the update of the evaluation that changed it, and to all later ones. A NaN value never counts
    as an improvement.

    The current scale is read-only state: ``optix.get_hyperparams(state)["scale"]``. ``factor``,
    ``rtol``, ``atol`` and ``min_scale`` can be changed with ``optix.set_hyperparams``.

    Place it after the learning rate, as in ``chain(sgd(0.1), reduce_on_plateau())``, so that
    it scales the step.

    Differences from the two well-known implementations:

    - ``torch.optim.lr_scheduler.ReduceLROnPlateau`` reduces when the bad-epoch count *exceeds*
      its ``patience``: torch's ``patience=p`` is optix's ``patience=p + 1``. Its relative
      threshold is ``v < b (1 - threshold)``, the same as optix's for positive ``b`` but a looser
      test for negative ones (a value slightly worse than a negative best counts as better). It
      also skips a reduction smaller than its ``eps=1e-8``. It always evaluates on every call
      (optix's ``accumulation_size=1``).
    - ``optax.contrib.reduce_on_plateau`` uses the same ``patience`` and accumulation as optix,
      and the threshold ``(1 - rtol) b - atol``, which equals optix's for positive ``b``.

    Args:
      factor: multiplier applied to the scale at a plateau, in (0, 1).
      patience: number of consecutive evaluations without improvement that triggers a reduction,
        an int >= 1.
      cooldown: number of evaluations after a reduction during which no plateau is counted,
        an int >= 0.
      rtol: relative part of the improvement margin, >= 0.
      atol: absolute part of the improvement margin, >= 0.
      min_scale: the scale is never reduced below this, >= 0.
      accumulation_size: number of updates whose values are averaged into one evaluation, an
        int >= 1 (use more than 1 when ``value`` is a noisy mini-batch loss).

    Returns:
      A :class:`GradientTransformation` whose state is a :class:`ReduceOnPlateauState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.sgd(0.1), optix.reduce_on_plateau(factor=0.5, patience=2))
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> for loss in [3.0, 2.0, 2.0, 2.0]:
      ...     updates, state = tx.update({"w": jnp.ones(2)}, state, value=loss)
      >>> float(optix.get_hyperparams(state)["scale"]), updates["w"]
      (0.5, Array([-0.05, -0.05], dtype=float32))

    Reference: the ``ReduceLROnPlateau`` callback of Keras and PyTorch.
    """
    _validate.check_int("patience", patience, minimum=1)
    _validate.check_int("cooldown", cooldown, minimum=0)
    _validate.check_int("accumulation_size", accumulation_size, minimum=1)
    patience, cooldown, accumulation_size = int(patience), int(cooldown), int(accumulation_size)
    spec = Hyperparams(factor=factor, rtol=rtol, atol=atol, min_scale=min_scale)

    def init(params):
        _validate.check_float_leaves(params, "`reduce_on_plateau` params")
        dtype = hyperparam_dtype()

        def zero():  # one buffer per counter: a donated state must not hold one buffer twice
            return jnp.zeros([], jnp.int32)

        hyperparams = spec.init()
        hyperparams = hyperparams._replace(
            scheduled={**hyperparams.scheduled, "scale": jnp.ones([], dtype)}
        )
        inf = jnp.full([], math.inf, dtype)
        return ReduceOnPlateauState(hyperparams, inf, zero(), zero(), jnp.zeros([], dtype), zero())

    def evaluate(state, h, mean):
        """The (scale, best, plateau_count, cooldown_count) after evaluating ``mean``."""
        best, scale = state.best, state.hyperparams.scheduled["scale"]
        margin = jnp.where(jnp.isfinite(best), h.rtol * jnp.abs(best), 0) + h.atol
        improved = mean < best - margin
        in_cooldown = state.cooldown_count > 0
        bad = jnp.where(improved | in_cooldown, 0, state.plateau_count + 1)
        reduce = bad >= patience
        reduced = jnp.minimum(scale, jnp.maximum(scale * h.factor, h.min_scale))
        cooldown_left = jnp.where(in_cooldown, state.cooldown_count - 1, 0)
        return (
            jnp.where(reduce, reduced, scale),
            jnp.where(improved, mean, best),
            jnp.where(reduce, 0, bad),
            jnp.where(reduce, cooldown, cooldown_left),
        )

    def update(updates, state, params=None, *, value=None, **extra):
        del params, extra
        if value is None:
            raise ValueError(
                "`reduce_on_plateau` needs the monitored loss: call "
                "`update(updates, state, params, value=loss)`."
            )
        value = jnp.asarray(value)
        real = jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)
        if value.shape != () or not real:
            raise ValueError(
                "`reduce_on_plateau` needs `value` to be a real scalar (the loss), got shape "
                f"{value.shape} and dtype {value.dtype}"
            )
        _validate.check_float_leaves(updates, "`reduce_on_plateau` updates")
        h, hyperparams = spec.step(state.hyperparams)
        value_sum = state.value_sum + value.astype(state.value_sum.dtype)
        value_count = state.value_count + 1
        ready = value_count == accumulation_size
        evaluated = evaluate(state, h, value_sum / accumulation_size)
        old: tuple[jax.Array, ...] = (state.hyperparams.scheduled["scale"], state.best)
        old += (state.plateau_count, state.cooldown_count)
        scale, best, plateau, cooldown_left = (
            jnp.where(ready, new, prev) for new, prev in zip(evaluated, old, strict=True)
        )
        value_sum = jnp.where(ready, jnp.zeros_like(value_sum), value_sum)
        value_count = jnp.where(ready, jnp.zeros_like(value_count), value_count)
        hyperparams = hyperparams._replace(scheduled={**hyperparams.scheduled, "scale": scale})
        updates = multiply(updates, scale)
        new_state = ReduceOnPlateauState(
            hyperparams, best, plateau, cooldown_left, value_sum, value_count
        )
        return updates, new_state

    return GradientTransformation(init, update)
