r"""SGD: plain, with heavy-ball or Nesterov momentum (torch.optim.SGD's conventions), and noisy.

Reference: Sutskever, Martens, Dahl & Hinton, `On the importance of initialization and momentum in
deep learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013; Neelakantan et
al., `Adding gradient noise improves learning for very deep networks
<https://arxiv.org/abs/1511.06807>`_, 2015.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Beta
from optix.toolkit import Fraction
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import is_off
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._regularize import add_noise
from optix.transforms._scale import scale_lr


class ScaleByMomentumState(NamedTuple):
    """State of :func:`scale_by_momentum`: the hyperparameters and the momentum buffer."""

    hyperparams: HyperparamState  # momentum, dampening
    trace: Updates  # the momentum buffer b_t


@transform(ScaleByMomentumState)
def scale_by_momentum(
    momentum: Beta = 0.9,
    *,
    nesterov: bool = False,
    dampening: Fraction = 0.0,
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

    Reference: Polyak, "Some methods of speeding up the convergence of iteration methods", 1964;
    Sutskever et al., `On the importance of initialization and momentum in deep learning
    <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013.
    """
    if nesterov and _validate.concrete_float(dampening) not in (None, 0.0):
        raise ValueError("`nesterov=True` requires `dampening=0`, as in torch.optim.SGD")
    # Nesterov needs dampening = 0, so it keeps none in state (set_hyperparams cannot break it);
    # a literal 0 keeps none either: the term would cost two scalar operands per leaf kernel.
    damped = not nesterov and not (isinstance(dampening, int | float) and dampening == 0)

    def rule(h):
        mu = h.momentum
        # The buffer starts at zero, so step 1 only needs the gradient's coefficient switched to 1
        # (a scalar select, not a per-element one); undamped, it is 1 at every step.
        coef = jnp.where(h.t == 1, 1, 1 - h.dampening) if damped else 1

        def momentum_(g, b):
            b = mu * b + coef * g if damped else g + mu * b
            return (g + mu * b if nesterov else b), b

        return momentum_

    def init(params):
        return (_tree.moments_like(params, trace_dtype, name="trace_dtype"),)

    spec = Hyperparams(momentum=momentum, **({"dampening": dampening} if damped else {}))
    return per_leaf("scale_by_momentum", ScaleByMomentumState, spec, init=init, rule=rule)


@checked
def sgd(
    learning_rate: NonNegative,
    momentum: Beta = 0.0,
    nesterov: bool = False,
    dampening: Fraction = 0.0,
    weight_decay: NonNegative = 0.0,
    *,
    trace_dtype: DTypeLike | None = None,
    accumulator_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, with optional momentum, Nesterov and L2 weight decay.

    .. math::
        d_t = g_t + \lambda \theta_{t-1}, \quad
        b_t = \mu b_{t-1} + (1-\tau) d_t \; (b_1 = d_1), \quad
        \theta_t = \theta_{t-1} - \eta \, (d_t + \mu b_t \text{ if Nesterov else } b_t)

    ``chain(add_decayed_weights, scale_by_momentum, scale_lr)``, each part built only when it
    does something. Full-batch gradient descent, SGD with batch size 1, and mini-batch SGD are the
    same optimizer: the data you compute the gradient on decides which. This is torch.optim.SGD
    exactly: ``weight_decay`` is the classic L2 term added to the gradient (see :func:`adamw` for
    decoupled decay), and the first momentum step takes the gradient undamped.

    A term whose value is the number 0 at construction (``momentum``, ``weight_decay``,
    ``dampening``) is left out, so it costs no memory and no work; it is then not in the state and
    cannot be set later. Give it as an array (``jnp.float32(0.0)``) to keep it settable.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      momentum: ``mu`` in [0, 1).
      nesterov: use Nesterov's accelerated gradient (needs ``momentum > 0``, ``dampening == 0``).
      dampening: ``tau`` in [0, 1].
      weight_decay: L2 coefficient ``lambda`` >= 0.
      trace_dtype: dtype of the momentum buffer ``b`` (for example ``jnp.bfloat16``); default:
        the param's dtype widened to at least float32. Only with ``momentum``.
      accumulator_dtype: optax's name for ``trace_dtype`` (``optax.sgd(accumulator_dtype=)``);
        give one or the other.

    Returns:
      A :class:`GradientTransformation`.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optix.sgd(0.1, momentum=0.9, nesterov=True)
      >>> state = tx.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> optix.apply_updates(params, updates)["w"]
      Array([ 0.62, -1.24], dtype=float32)

    Reference: Robbins & Monro, `A stochastic approximation method
    <https://doi.org/10.1214/aoms/1177729586>`_, 1951; Polyak, 1964;
    Nesterov, 1983; Sutskever et al., `On the importance of initialization and momentum in deep
    learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, ICML 2013.
    """
    if nesterov and is_off(momentum):
        raise ValueError("`nesterov=True` requires `momentum > 0`, as in torch.optim.SGD")
    if trace_dtype is not None and accumulator_dtype is not None:
        raise ValueError(
            "`trace_dtype` and `accumulator_dtype` name the same momentum-buffer dtype "
            "(`accumulator_dtype` is optax's spelling); give only one"
        )
    buffer_dtype, buffer_arg = (
        (trace_dtype, "trace_dtype")
        if trace_dtype is not None
        else (accumulator_dtype, "accumulator_dtype")
    )
    _tree.check_state_dtype(buffer_arg, buffer_dtype)
    if buffer_dtype is not None and is_off(momentum):
        raise ValueError(
            f"`{buffer_arg}` sets the momentum buffer's dtype, but `momentum=0` builds no buffer"
        )
    parts = []
    if not is_off(weight_decay):
        parts.append(add_decayed_weights(weight_decay))
    if not is_off(momentum):
        parts.append(
            scale_by_momentum(
                momentum, nesterov=nesterov, dampening=dampening, trace_dtype=buffer_dtype
            )
        )
    return chain(*parts, scale_lr(learning_rate))


@checked
def noisy_sgd(
    learning_rate: NonNegative,
    eta: NonNegative = 0.01,
    gamma: NonNegative = 0.55,
    seed: Any = 0,
) -> GradientTransformation:
    r"""SGD with annealed Gaussian gradient noise.

    .. math::
        \theta_t = \theta_{t-1} - \eta_{lr} (g_t + n_t), \qquad
        n_t \sim \mathcal{N}\big(0, \eta / (1 + t)^\gamma\big)

    ``chain(add_noise, scale_lr)``: the noise is added to the gradient, before the learning rate,
    as in the paper and optax's ``noisy_sgd`` (which draws different random numbers; see
    :func:`add_noise` for optix's).

    Args:
      learning_rate: step size >= 0, or a schedule.
      eta: initial noise variance >= 0.
      gamma: annealing exponent >= 0.
      seed: an int or a PRNG key.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.noisy_sgd(0.1, eta=0.01, seed=42)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Neelakantan et al., `Adding gradient noise improves learning for very deep
    networks <https://arxiv.org/abs/1511.06807>`_, 2015.
    """
    return chain(add_noise(eta, gamma, seed), scale_lr(learning_rate))
