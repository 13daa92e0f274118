"""Learning-rate grafting: one optimizer's step size per layer, another's direction."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._chain import caller
from optix._chain import check_transform
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import Positive
from optix.toolkit import transform


class GraftState(NamedTuple):
    """State of :func:`graft`: its hyperparameters and the two optimizers' states."""

    hyperparams: HyperparamState  # eps
    magnitude_state: OptState  # the state of magnitude_tx
    direction_state: OptState  # the state of direction_tx


@transform(GraftState)
def graft(
    magnitude_tx: GradientTransformation,
    direction_tx: GradientTransformation,
    eps: Positive = 1e-16,
) -> GradientTransformation:
    r"""Grafting: each leaf steps in ``direction_tx``'s direction, by ``magnitude_tx``'s norm.

    Both optimizers see the same gradient; with ``m`` and ``d`` their steps for a leaf,

    .. math::
        u = \frac{\lVert m \rVert_2}{\max(\lVert d \rVert_2, \epsilon)} \, d

    with Euclidean norms over the whole leaf (the paper's layer-wise grafting, ``M#D``). A leaf
    whose direction step is zero gets a zero step. The learning-rate schedule of ``magnitude_tx``
    is the one that counts (``direction_tx``'s learning rate cancels out, unless ``||d|| < eps``),
    which is what the paper uses grafting for: transferring one optimizer's implicit step-size
    schedule to another.

    Args:
      magnitude_tx: the optimizer whose per-leaf step norm is used (for example SGD, or Adam).
      direction_tx: the optimizer whose per-leaf direction is used.
      eps: ``epsilon`` > 0, the smallest direction norm divided by.

    Returns:
      A transform with state :class:`GraftState`, holding both optimizers' states; their
      hyperparameters are reached by path when both have one of the same name (for example
      ``magnitude_state/learning_rate``). The updates have the gradient's dtype; the norms and the
      rescaling run in at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.graft(optix.sgd(0.1), optix.sign_sgd(1.0))
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([3.0, 4.0]), state, params)
      >>> updates  # sign_sgd's direction, scaled to the norm of sgd's step, 0.1 * 5
      Array([-0.35355338, -0.35355338], dtype=float32)

    Reference: Agarwal, Anil, Hazan, Koren & Zhang, `Disentangling adaptive gradient methods
    from learning rates <https://arxiv.org/abs/2002.11803>`_, 2020.
    """
    check_transform(magnitude_tx, "`magnitude_tx`")
    check_transform(direction_tx, "`direction_tx`")
    call_magnitude, call_direction = caller(magnitude_tx), caller(direction_tx)
    spec = Hyperparams(eps=eps)

    def init(params):
        _validate.check_float_leaves(params, "`graft` params")
        return GraftState(spec.init(), magnitude_tx.init(params), direction_tx.init(params))

    def update(updates, state, params=None, **extra):
        _validate.check_float_leaves(updates, "`graft` updates")
        h, hyperparams = spec.step(state.hyperparams)
        m, magnitude_state = call_magnitude(updates, state.magnitude_state, params, extra)
        d, direction_state = call_direction(updates, state.direction_state, params, extra)

        def leaf(g, m, d):
            m, d = _tree.upcast(m), _tree.upcast(d)
            m_norm = jnp.sqrt(jnp.sum(_tree.abs_sq(m)))
            d_norm = jnp.sqrt(jnp.sum(_tree.abs_sq(d)))
            return (m_norm / jnp.maximum(d_norm, h.eps) * d).astype(g.dtype)

        grafted = _tree.map_leaves(leaf, updates, m, d)
        return grafted, GraftState(hyperparams, magnitude_state, direction_state)

    return GradientTransformation(init, update)
