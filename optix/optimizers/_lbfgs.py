"""L-BFGS: a quasi-Newton direction, scaled by a learning rate and a line search."""

from __future__ import annotations

from typing import Literal

from optix._base import GradientTransformation, ScalarOrSchedule
from optix._chain import chain
from optix.transforms._lbfgs import scale_by_lbfgs
from optix.transforms._linesearch import scale_by_backtracking_linesearch
from optix.transforms._scale import scale_lr
from optix.transforms._zoom_linesearch import scale_by_zoom_linesearch


def lbfgs(
    learning_rate: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | Literal["zoom", "backtracking"] | None = "zoom",
) -> GradientTransformation:
    r"""L-BFGS: steps along the limited-memory BFGS direction, with a line search.

    .. math::
        d_k = H_k g_k, \qquad x_{k+1} = x_k - \eta_k \, \alpha \, d_k

    where ``H_k`` is the inverse-Hessian approximation built from the last ``memory_size`` pairs
    of parameter and gradient differences (see :func:`scale_by_lbfgs`), ``alpha`` the learning
    rate and ``eta_k`` the step length the line search picks. The chain is
    ``chain(scale_by_lbfgs(...), scale_lr(learning_rate), linesearch)``, as in optax's ``lbfgs``.

    With the default zoom line search (strong Wolfe, first trial step 1, at most 20 evaluations)
    ``update`` needs the objective: call ``tx.update(grad, state, params, value=value,
    grad=grad, value_fn=f)``. :func:`optix.value_and_grad_from_state` then gives the next
    ``(value, grad)`` for free, since the line search computed them at the accepted point.
    With ``linesearch=None`` the step length is fixed to ``learning_rate`` and ``update`` needs
    no objective, which suits stochastic gradients (where curvature pairs are noisy; use a
    small learning rate).

    Args:
      learning_rate: scales the direction before the line search (so with one, it is the first
        step length tried); None means 1. With ``linesearch=None``, the fixed step length.
      memory_size: number of curvature pairs kept.
      scale_init_precond: scale the initial inverse Hessian by ``s^T y / y^T y``.
      linesearch: ``"zoom"`` (:func:`scale_by_zoom_linesearch` with
        ``initial_guess_strategy="one"``), ``"backtracking"``
        (:func:`scale_by_backtracking_linesearch` with ``store_grad=True``), a line-search
        transform, or None for a fixed step.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> f = lambda x: jnp.sum((x - jnp.arange(3.0)) ** 2) + 0.25 * jnp.sum(x**4)
      >>> tx = optix.lbfgs()
      >>> x = jnp.zeros(3)
      >>> state = tx.init(x)
      >>> value_and_grad = optix.value_and_grad_from_state(f)
      >>> for _ in range(20):
      ...     value, grad = value_and_grad(x, state=state)
      ...     updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
      ...     x = optix.apply_updates(x, updates)
      >>> bool(jnp.linalg.norm(value_and_grad(x, state=state)[1]) < 1e-4)
      True

    Reference: Liu & Nocedal, "On the limited memory BFGS method for large scale optimization",
    Math. Programming 1989; Nocedal & Wright, "Numerical Optimization", 2nd ed. 2006, ch. 7.
    """
    if linesearch == "zoom":
        linesearch = scale_by_zoom_linesearch(20, initial_guess_strategy="one")
    elif linesearch == "backtracking":
        linesearch = scale_by_backtracking_linesearch(store_grad=True)
    elif isinstance(linesearch, str):
        raise ValueError(
            f"`linesearch` must be 'zoom', 'backtracking', a transform or None, got {linesearch!r}"
        )
    members = [
        scale_by_lbfgs(memory_size, scale_init_precond),
        scale_lr(1.0 if learning_rate is None else learning_rate),
    ]
    if linesearch is not None:
        members.append(linesearch)
    return chain(*members)
