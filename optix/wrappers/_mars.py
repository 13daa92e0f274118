"""MARS: a variance-reduced gradient (scaled stochastic recursive momentum) fed to any optimizer."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Updates
from optix._chain import caller
from optix._chain import check_transform
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import leafwise
from optix.toolkit import transform


class MarsState(NamedTuple):
    """State of :func:`mars`: its hyperparameters, the previous gradient and the inner state."""

    hyperparams: HyperparamState  # gamma, b1
    previous: Updates | None  # g_{t-1} (zeros before the first update); None when exact
    inner_state: OptState  # the wrapped optimizer's state


@transform(MarsState)
def mars(
    tx: GradientTransformation,
    gamma: NonNegative = 0.025,
    b1: Beta = 0.9,
    *,
    exact: bool = False,
) -> GradientTransformation:
    r"""MARS: give ``tx`` a variance-reduced gradient instead of the gradient.

    Per leaf, with ``g_t`` the gradient this wrapper receives and ``g_0 = 0``:

    .. math::
        c_t = g_t + \gamma \frac{\beta_1}{1-\beta_1} (g_t - g_{t-1}), \qquad
        \tilde c_t = \begin{cases} c_t / \lVert c_t \rVert_2 & \lVert c_t \rVert_2 > 1 \\
                                   c_t & \text{otherwise} \end{cases}

    and ``tx`` gets ``\tilde c_t`` where it would have got ``g_t``. This is MARS's approximate
    form (the paper's "MARS-approx", the default of the authors' code): ``g_{t-1}`` is the
    previous step's gradient, evaluated on the previous minibatch, rather than a second gradient
    at the previous params on the current minibatch. Around :func:`optix.adamw` with the same
    ``b1`` it is MARS-AdamW; around :func:`optix.lion`, MARS-Lion.

    With ``exact=True`` it is the paper's exact form (Algorithm 1): ``g_{t-1}`` is the gradient
    of the *current* minibatch at the *previous* params, which the caller computes (a second
    gradient evaluation per step) and passes as ``update(grads, state, params,
    previous_grad=...)``. On the first step, where there are no previous params, pass the
    gradient itself (no correction). The state then keeps no gradient buffer.

    The clipping is per leaf: each leaf's ``c_t`` is scaled to unit Euclidean norm when its norm
    exceeds 1. The paper's Algorithm 1 writes ``Clip(c_t, 1)`` with the norm of the whole vector;
    the authors' code applies it to each parameter tensor, which this follows. As in their code,
    the first update has ``g_0 = 0``, so ``c_1 = (1 + \gamma \beta_1 / (1-\beta_1)) g_1``.

    Args:
      tx: the optimizer to feed (a complete one, for example ``optix.adamw(3e-3, b1=0.95)``).
      gamma: ``gamma`` >= 0, the strength of the gradient correction (0.025 in the paper); with
        0 the wrapper only clips. Settable with :func:`optix.set_hyperparams`, or a schedule.
      b1: ``beta_1`` in [0, 1), the momentum decay the correction is scaled for; use the inner
        optimizer's own ``b1``. A separate hyperparameter: the wrapper cannot read ``tx``'s.
      exact: take ``g_{t-1}`` from the ``previous_grad`` argument of each update (the exact
        form) instead of keeping the last gradient in the state (the approximate form).

    Returns:
      A transform with state :class:`MarsState`. The previous gradient is kept in at least
      float32 (bf16 gradients give a float32 buffer); ``c_t`` is computed in at least float32 and
      passed to ``tx`` in the gradient's dtype.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.mars(optix.sgd(1.0), gamma=0.5, b1=0.5)
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.2, 0.0]), state, params)
      >>> updates  # c_1 = (1 + 0.5) * g_1
      Array([-0.3, -0. ], dtype=float32)
      >>> updates, state = tx.update(jnp.array([0.6, 0.8]), state, params)
      >>> updates  # c_2 = g_2 + 0.5 (g_2 - g_1) = [0.8, 1.2], clipped to unit norm
      Array([-0.5547..., -0.8320...], dtype=float32)

    Reference: Yuan, Liu, Wu, Zhou & Gu, `MARS: unleashing the power of variance reduction for
    training large models <https://arxiv.org/abs/2411.10438>`_, 2024.
    """
    check_transform(tx, "`tx`")
    call = caller(tx)
    spec = Hyperparams(gamma=gamma, b1=b1)

    def init(params):
        _validate.check_float_leaves(params, "`mars` params")
        previous = None if exact else _tree.moments_like(params)
        return MarsState(spec.init(), previous, tx.init(params))

    def update(updates, state, params=None, **extra):
        if exact:
            previous_grad = extra.pop("previous_grad", None)
            if previous_grad is None:
                raise ValueError(
                    "`mars(..., exact=True)` needs the gradient of this minibatch at the previous "
                    "params: call `update(grads, state, params, previous_grad=...)` (on the first "
                    "step, pass the gradient itself)"
                )
            _validate.check_updates(previous_grad, updates, "mars")
        else:
            previous_grad = state.previous
            _validate.check_updates(updates, state.previous, "mars")
        h, hyperparams = spec.step(state.hyperparams)
        weight = h.gamma * h.b1 / (1 - h.b1)

        def correct(g, g_prev):
            c = g + weight * (g - g_prev)
            norm = jnp.sqrt(jnp.sum(_tree.abs_sq(c)))
            c = jnp.where(norm > 1, c / jnp.maximum(norm, 1), c)
            return c, jnp.copy(g)  # a copy: the state never holds the caller's gradient buffer

        corrected, previous = leafwise(correct, updates, previous_grad)
        steps, inner_state = call(corrected, state.inner_state, params, extra)
        if exact:
            previous = None
        return steps, MarsState(hyperparams, previous, inner_state)

    return GradientTransformation(init, update)
