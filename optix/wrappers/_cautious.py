"""Cautious optimizers: drop the coordinates of a step that do not descend along the gradient."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._chain import caller
from optix._chain import check_transform

_WHY_REAL = "the sign test compares the signs of real numbers"


class CautiousState(NamedTuple):
    """State of :func:`cautious`: the wrapped optimizer's state (the mask itself keeps none)."""

    inner_state: OptState


def cautious(tx: GradientTransformation) -> GradientTransformation:
    r"""Cautious optimizer: run ``tx``, then keep only the coordinates of its step that descend.

    With ``g`` the gradient this wrapper receives and ``u`` the step ``tx`` returns (after
    :func:`optix.scale_lr`, so ``theta <- theta + u``), per leaf of ``n`` elements:

    .. math::
        \phi_i = \mathbb{1}[u_i g_i < 0], \qquad
        \tilde u = \frac{n}{\sum_i \phi_i + 1} \, \phi \odot u

    The paper writes the optimizer's direction ``u^{paper} = -u / \eta`` (the parameters move by
    ``-\eta u^{paper}``) and keeps ``u^{paper}_i g_i > 0``: the same coordinates, those where the
    step points down the gradient. The inequality is strict, so a coordinate whose gradient or
    step is exactly zero is dropped. The rescaling by ``n / (\text{kept} + 1)``, per leaf, is the
    one of the authors' original C-AdamW code (``numel / (mask.sum() + 1)`` per tensor, the mask
    taken on the first moment, whose sign is the step's); it keeps the mean step size of a leaf
    roughly unchanged when part of it is masked, and is ``0`` for an empty leaf. (Later versions
    of that code divide by ``max(kept / n, 1e-3)`` instead.)

    The mask applies to the whole step ``tx`` returns, including any weight decay inside ``tx``
    (``optix.adamw``'s ``-eta * lambda * theta``): a decayed coordinate is dropped when the
    combined step disagrees with the gradient. The paper's C-AdamW applies the decay unmasked,
    so ``cautious(adamw(eta, weight_decay=lambda))`` differs from it by ``-eta * lambda * theta``
    on the dropped coordinates. There is no ``mask_weight_decay`` option (the
    "cautious weight decay" that decays only where the parameter and the step agree in sign): a
    wrapper sees only ``tx``'s combined step and cannot tell the decay term from the rest of it
    for a general ``tx``, so the option would be ill defined here.

    Args:
      tx: the optimizer to make cautious: a complete one, whose updates are steps (ending in
        :func:`optix.scale_lr`, as every optimizer factory of optix does). Before ``scale_lr``
        the sign convention is the opposite one and the mask would keep the ascending
        coordinates instead.

    Returns:
      A transform with state :class:`CautiousState`. Its updates have the gradient's dtype;
      the sign test and the rescaling run in at least float32. Params and gradients must be
      real: complex leaves raise ``TypeError``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.cautious(optix.sgd(0.1, momentum=0.9))
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> _, state = tx.update(jnp.array([1.0, 1.0]), state, params)
      >>> updates, state = tx.update(jnp.array([1.0, -0.5]), state, params)
      >>> updates  # momentum's step [-0.19, -0.04]; its second coordinate ascends: dropped
      Array([-0.19,  0.  ], dtype=float32)

    Reference: Liang, Chen, Liu & Liu, `Cautious optimizers: improving training with one line
    of code <https://arxiv.org/abs/2411.16085>`_, 2024.
    """
    check_transform(tx, "`tx`")
    call = caller(tx)

    def init(params):
        _validate.check_float_leaves(params, "`cautious` params")
        _validate.check_real_leaves(params, "cautious", _WHY_REAL)
        return CautiousState(tx.init(params))

    def update(updates, state, params=None, **extra):
        _validate.check_float_leaves(updates, "`cautious` updates")
        _validate.check_real_leaves(updates, "cautious", _WHY_REAL)
        steps, inner_state = call(updates, state.inner_state, params, extra)

        def leaf(u, g):
            u32, g32 = _tree.upcast(u), _tree.upcast(g)
            keep = u32 * g32 < 0
            scale = keep.size / (jnp.sum(keep, dtype=u32.dtype) + 1)
            return jnp.where(keep, scale * u32, 0).astype(g.dtype)

        masked = _tree.map_leaves(leaf, steps, updates)
        return masked, CautiousState(inner_state)

    return GradientTransformation(init, update)
