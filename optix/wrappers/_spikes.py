"""Spike protection: skip a step whose gradient norm (or loss) is a z-score outlier of a window."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._chain import caller
from optix._chain import check_transform
from optix._hyperparams import increment
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import Positive
from optix.toolkit import transform
from optix.wrappers._nonfinite import step_or_hold

_EPS = 1e-8
_ON = ("grad_norm", "loss")


class SkipSpikesState(NamedTuple):
    """State of :func:`skip_spikes`.

    Attributes:
      hyperparams: ``threshold``.
      values: the ring buffer of the last ``window`` accepted values of the monitored quantity
        (float32, float64 with ``jax_enable_x64``); only the first ``filled`` entries are valid.
      filled: int32 number of valid entries in ``values`` (at most ``window``).
      position: int32 index the next accepted value is written to.
      inner_state: the wrapped transform's state.
      skipped: int32 total number of steps skipped so far (the only field a skipped step changes).
    """

    hyperparams: HyperparamState
    values: jax.Array
    filled: jax.Array
    position: jax.Array
    inner_state: OptState
    skipped: jax.Array


@transform(SkipSpikesState)
def skip_spikes(
    tx: GradientTransformation,
    *,
    window: int = 100,
    threshold: Positive = 6.0,
    warmup: int | None = None,
    on: str = "grad_norm",
) -> GradientTransformation:
    r"""Skip every step whose gradient norm (or loss) is a z-score outlier of the recent values.

    With :math:`x_t` the monitored value (``on="grad_norm"``: the global L2 norm of the gradient
    this wrapper receives; ``on="loss"``: the ``loss`` passed to ``update``) and
    :math:`W` the accepted values in the window (the last ``window`` of them, :math:`n = |W|`):

    .. math::
        \mu = \frac{1}{n}\sum_{w \in W} w, \qquad
        \sigma = \Big(\frac{1}{n}\sum_{w \in W} (w - \mu)^2\Big)^{1/2}, \qquad
        \text{spike}_t = \neg\,\mathrm{finite}(x_t) \;\lor\;
          \Big(n \ge \mathrm{warmup} \;\land\; \frac{x_t - \mu}{\sigma + \epsilon} > \tau\Big)

    with :math:`\tau` = ``threshold``, the population standard deviation (``ddof=0``) and
    :math:`\epsilon = 10^{-8}` guarding :math:`\sigma = 0` (a constant window: then any value above
    the mean by more than :math:`\tau\epsilon` is a spike). Only upward outliers count.

    On a spike the step emits zero updates (in the inner updates' dtypes) and the whole state is
    left bitwise unchanged (the inner state, the window, the hyperparameters' step count) except
    ``state.skipped``, which counts skips; the spike's value does not enter the window. Otherwise
    ``tx`` runs (under ``jax.lax.cond``, only on steps it is used) and :math:`x_t` enters the
    window, replacing the oldest value once it is full. A non-finite value is a spike even during
    warm-up; a finite one is never a spike while the window holds fewer than ``warmup`` values.

    Args:
      tx: the optimizer to protect.
      window: int >= 1, how many recent accepted values the statistics are taken over.
      threshold: ``tau`` > 0, the z-score above which a step is skipped. Settable with
        :func:`optix.set_hyperparams`, or a schedule.
      warmup: int in ``[1, window]``, the number of values the window must hold before a finite
        value can be a spike; ``None`` means ``min(window, 10)``.
      on: ``"grad_norm"`` (the global gradient norm) or ``"loss"``: then every call is
        ``update(grads, state, params, loss=value)`` with the scalar loss of this step (a missing
        ``loss`` raises a ``TypeError`` naming it). The keyword is passed on to ``tx`` too.

    Returns:
      A transform with state :class:`SkipSpikesState`. Hyperparameters of ``tx`` stay reachable
      with :func:`optix.get_hyperparams` and :func:`optix.set_hyperparams`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.skip_spikes(optix.sgd(0.1), window=4, warmup=2, threshold=3.0)
      >>> state = tx.init({"w": jnp.zeros(1)})
      >>> for g in [1.0, 1.1, 0.9, 100.0, 1.0]:
      ...     updates, state = tx.update({"w": jnp.array([g])}, state)
      >>> int(state.skipped), int(state.filled)
      (1, 4)

    Reference: the z-score skip rule of the skip-step optimizers in large training stacks, such
    as AllenAI's `OLMo-core <https://github.com/allenai/OLMo-core>`_; the same z-score of the
    gradient norm drives ZClip (:func:`optix.zclip`): Kumar et al., `ZClip: adaptive spike
    mitigation for LLM pre-training <https://arxiv.org/abs/2504.02507>`_, 2025.
    """
    check_transform(tx, "`tx`")
    _validate.check_int("window", window, minimum=1)
    window = int(window)
    if warmup is None:
        warmup = min(window, 10)
    _validate.check_int("warmup", warmup, minimum=1)
    warmup = int(warmup)
    if warmup > window:
        raise ValueError(f"`warmup` must be at most `window` ({window}), got {warmup}")
    if on not in _ON:
        raise ValueError(f"`on` must be one of {_ON}, got {on!r}")
    spec = Hyperparams(threshold=threshold)
    call = caller(tx)
    dtype = _validate.stored_dtype()

    def init(params):
        return SkipSpikesState(
            spec.init(),
            jnp.zeros([window], dtype),
            jnp.zeros([], jnp.int32),
            jnp.zeros([], jnp.int32),
            tx.init(params),
            jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, **extra):
        if on == "loss":
            if "loss" not in extra or extra["loss"] is None:
                raise TypeError("`skip_spikes(on='loss')` needs `update(..., loss=value)`")
            x = jnp.asarray(extra["loss"]).astype(dtype)
            if x.shape != ():
                raise ValueError(f"`loss` must be a scalar, got shape {x.shape}")
        else:
            x = _tree.global_norm(updates).astype(dtype)
        h, hyperparams = spec.step(state.hyperparams)
        valid = jnp.arange(window) < state.filled
        n = jnp.maximum(state.filled, 1).astype(dtype)
        mean = jnp.sum(jnp.where(valid, state.values, 0)) / n
        var = jnp.sum(jnp.where(valid, (state.values - mean) ** 2, 0)) / n
        z = (x - mean) / (jnp.sqrt(var) + _EPS)
        outlier = jnp.logical_and(state.filled >= warmup, z > h.threshold)
        spike = jnp.logical_or(jnp.logical_not(jnp.isfinite(x)), outlier)

        out, inner_state = step_or_hold(spike, call, updates, state.inner_state, params, extra)
        values = state.values.at[state.position].set(x)
        filled = jnp.minimum(state.filled + 1, window)
        position = (state.position + 1) % window

        def keep(new, old):
            return jax.tree.map(lambda a, b: jnp.where(spike, b, a), new, old)

        return out, SkipSpikesState(
            keep(hyperparams, state.hyperparams),
            keep(values, state.values),
            keep(filled, state.filled),
            keep(position, state.position),
            inner_state,
            jnp.where(spike, increment(state.skipped), state.skipped),
        )

    return GradientTransformation(init, update)
