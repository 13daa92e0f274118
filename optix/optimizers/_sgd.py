"""Gradient descent: full-batch, stochastic and mini-batch, with momentum, Nesterov and noise."""

from __future__ import annotations

from typing import Any

from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation, ScalarOrSchedule
from optix._chain import chain
from optix.transforms._momentum import scale_by_momentum
from optix.transforms._regularize import add_decayed_weights, add_noise
from optix.transforms._scale import scale_lr


def nonzero(value: Any) -> bool:
    """Whether a term is built into the chain: a zero constant is left out (no state, no work)."""
    return callable(value) or not (isinstance(value, int | float) and value == 0)


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule = 0.0,
    nesterov: bool = False,
    dampening: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    trace_dtype: DTypeLike | None = None,
    accumulator_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, with optional momentum, Nesterov and L2 weight decay.

    .. math::
        d_t = g_t + \lambda \theta_{t-1}, \quad
        b_t = \mu b_{t-1} + (1-\tau) d_t \; (b_1 = d_1), \quad
        \theta_t = \theta_{t-1} - \eta \, (d_t + \mu b_t \text{ if Nesterov else } b_t)

    Full-batch gradient descent, SGD with batch size 1, and mini-batch SGD are the same optimizer:
    the data you compute the gradient on decides which. This is torch.optim.SGD exactly:
    ``weight_decay`` is the classic L2 term added to the gradient (see :func:`adamw` for decoupled
    decay), and the first momentum step takes the gradient undamped.

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

    Reference: Robbins & Monro, 1951; Polyak, 1964; Nesterov, 1983; Sutskever et al., ICML 2013.
    """
    if nesterov and not nonzero(momentum):
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
    if buffer_dtype is not None and not nonzero(momentum):
        raise ValueError(
            f"`{buffer_arg}` sets the momentum buffer's dtype, but `momentum=0` builds no buffer"
        )
    parts = []
    if nonzero(weight_decay):
        parts.append(add_decayed_weights(weight_decay))
    if nonzero(momentum):
        parts.append(
            scale_by_momentum(
                momentum, nesterov=nesterov, dampening=dampening, trace_dtype=buffer_dtype
            )
        )
    return chain(*parts, scale_lr(learning_rate))


def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: ScalarOrSchedule = 0.01,
    gamma: ScalarOrSchedule = 0.55,
    seed: Any = 0,
) -> GradientTransformation:
    r"""SGD with annealed Gaussian gradient noise.

    .. math::
        \theta_t = \theta_{t-1} - \eta_{lr} (g_t + n_t), \qquad
        n_t \sim \mathcal{N}\big(0, \eta / (1 + t)^\gamma\big)

    The noise is added to the gradient, before the learning rate, as in the paper and optax's
    ``noisy_sgd`` (which draws different random numbers; see :func:`add_noise` for optix's).

    Args:
      learning_rate: step size >= 0, or a schedule.
      eta: initial noise variance >= 0.
      gamma: annealing exponent >= 0.
      seed: an int or a PRNG key.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.noisy_sgd(0.1, eta=0.01, seed=42)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Neelakantan et al., "Adding gradient noise improves learning for very deep
    networks", 2015.
    """
    return chain(add_noise(eta, gamma, seed), scale_lr(learning_rate))
