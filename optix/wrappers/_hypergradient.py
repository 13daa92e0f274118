r"""Hypergradient descent: the learning rate learns online from consecutive update directions."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Updates
from optix._chain import caller
from optix._chain import check_transform
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import multiply
from optix.toolkit import transform


class HypergradientDescentState(NamedTuple):
    """State of :func:`hypergradient_descent`."""

    inner_state: OptState  # the direction transform's state
    direction: Updates  # d_{t-1}: the direction of the previous update (zeros at init)
    # learning_rate: alpha_{t-1}, the rate the most recent update used (alpha_0 at init), which
    # every update adapts; hyper_lr: beta. count: the number of updates.
    hyperparams: HyperparamState


def _real_dot(a: Any, b: Any) -> jax.Array:
    """``Re sum_i conj(a_i) b_i`` over all leaves, accumulated in the hyperparameter precision."""
    dt = hyperparam_dtype()
    with jax.numpy_dtype_promotion("standard"):
        parts = [
            jnp.sum(jnp.real(jnp.conj(_tree.upcast(x)) * _tree.upcast(y))).astype(dt)
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        ]
    return sum(parts, jnp.zeros([], dt))


@transform(HypergradientDescentState)
def hypergradient_descent(
    inner: GradientTransformation,
    learning_rate: NonNegative,
    hyper_lr: NonNegative,
    *,
    multiplicative: bool = False,
) -> GradientTransformation:
    r"""Hypergradient descent (HD): adapt the learning rate online by gradient descent on it.

    ``inner`` makes a *direction* ``d_t`` that points uphill, like the gradient (an optimizer
    without its learning rate: :func:`optix.identity` for SGD, :func:`optix.scale_by_adam` for
    Adam, a :func:`optix.chain` of them); the wrapper keeps the learning rate ``alpha`` in its
    state and returns the update ``u_t = -alpha_t d_t``. Since ``u_{t-1} = -alpha d_{t-1}``, the
    derivative of the loss at the current params with respect to the rate of the previous step
    is ``g_t . du_{t-1}/dalpha = -g_t . d_{t-1}`` (``g_t`` the gradient this update receives),
    and one step of gradient descent on it, with step ``beta`` (``hyper_lr``), gives

    .. math::
        \alpha_t = \alpha_{t-1} + \beta\, g_t \cdot d_{t-1}, \qquad u_t = -\alpha_t d_t,

    with ``d_0 = 0``, so the first update uses ``alpha_0`` (``learning_rate``). The rate grows
    while consecutive directions agree and shrinks when they oppose (an overshoot). With
    ``inner=identity()`` this is the paper's SGD-HD, with ``inner=scale_by_adam()`` its Adam-HD
    (``d_t = \hat m_t / (\sqrt{\hat v_t} + \epsilon)``). The dot product runs over all leaves
    (real part for complex params), in float32 (float64 under x64).

    ``multiplicative=True`` takes the paper's multiplicative rule instead, a relative change by
    the cosine of the angle between ``g_t`` and ``d_{t-1}`` (``beta`` then has no units and the
    rate keeps its sign; the cosine is 0 while either vector is 0):

    .. math::
        \alpha_t = \alpha_{t-1} \Bigl(1 + \beta\,
            \frac{g_t \cdot d_{t-1}}{\lVert g_t\rVert\, \lVert d_{t-1}\rVert}\Bigr).

    The rate is a hyperparameter in the state, ``learning_rate``: after each update it holds the
    ``alpha_t`` that update used (:func:`optix.get_hyperparams` reads the adapted rate), and
    :func:`optix.set_hyperparams` restarts the adaptation from a new value, as it sets
    ``hyper_lr``. The additive rule does not keep the rate positive; a ``beta`` too large for the
    scale of ``g . d`` (which grows with the gradients' size) makes it oscillate. The paper's
    settings are ``beta`` around ``1e-3`` for SGD-HD and ``1e-7`` for Adam-HD.

    This wraps a direction rather than a complete optimizer because the update must be linear in
    the adapted rate: weight decay added inside ``inner`` (``chain(add_decayed_weights(wd),
    scale_by_adam())``) is scaled by it, as in the paper's framing of ``u(alpha)``.

    Args:
      inner: the transform making the direction ``d_t`` (without a learning rate or its sign).
      learning_rate: ``alpha_0`` >= 0, the initial learning rate (a number: the wrapper adapts it).
      hyper_lr: ``beta`` >= 0, the hypergradient step size, or a schedule. 0 keeps the rate
        fixed: then the wrapper is ``chain(inner, scale_lr(learning_rate))``.
      multiplicative: use the multiplicative rule instead of the additive one.

    Returns:
      A transform with state :class:`HypergradientDescentState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.hypergradient_descent(optix.identity(), learning_rate=0.1, hyper_lr=0.01)
      >>> params = jnp.ones(2)
      >>> state = tx.init(params)
      >>> for _ in range(3):  # gradients of 0.5 |x|^2 keep their direction: the rate grows
      ...     updates, state = tx.update(params, state)
      ...     params = optix.apply_updates(params, updates)
      >>> round(float(optix.get_hyperparams(state)["learning_rate"]), 5)
      0.13229

    Reference: Baydin, Cornish, Martinez Rubio, Schmidt & Wood, `Online learning rate adaptation
    with hypergradient descent <https://arxiv.org/abs/1703.04782>`_, ICLR 2018.
    """
    check_transform(inner, "`inner`")
    if callable(learning_rate):
        raise TypeError(
            "`learning_rate` is the initial rate, a number: hypergradient_descent adapts it, so it "
            "cannot follow a schedule (`hyper_lr` can)"
        )
    if not isinstance(multiplicative, bool):
        raise TypeError(f"`multiplicative` must be a bool, got {multiplicative!r}")
    call_inner = caller(inner)
    spec = Hyperparams(learning_rate=learning_rate, hyper_lr=hyper_lr)

    def init(params):
        _validate.check_float_leaves(params, "`hypergradient_descent` params")
        direction = jax.tree.map(jnp.zeros_like, params)
        return HypergradientDescentState(inner.init(params), direction, spec.init())

    def update(updates, state, params=None, **extra):
        _validate.check_float_leaves(updates, "`hypergradient_descent` updates")
        _validate.check_same_structure(
            updates, state.direction, "updates", "the `hypergradient_descent` state"
        )
        h, hyperparams = spec.step(state.hyperparams)
        dot = _real_dot(updates, state.direction)
        if multiplicative:
            norms = jnp.sqrt(_real_dot(updates, updates)) * jnp.sqrt(
                _real_dot(state.direction, state.direction)
            )
            positive = norms > 0
            cosine = jnp.where(positive, dot / jnp.where(positive, norms, 1), 0)
            rate = h.learning_rate * (1 + h.hyper_lr * cosine)
        else:
            rate = h.learning_rate + h.hyper_lr * dot
        direction, inner_state = call_inner(updates, state.inner_state, params, extra)
        new_updates = multiply(direction, -rate)
        kept = jax.tree.map(lambda d, old: d.astype(old.dtype), direction, state.direction)
        hyperparams = hyperparams._replace(values={**hyperparams.values, "learning_rate": rate})
        return new_updates, HypergradientDescentState(inner_state, kept, hyperparams)

    return GradientTransformation(init, update)
