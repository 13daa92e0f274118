"""Line searches along an update direction: backtracking (Armijo), and the pieces every line
search shares (reading ``value``/``grad``/``value_fn`` from ``update``'s keyword arguments). The
zoom (strong Wolfe) search is in ``_zoom_linesearch.py``, with :func:`value_and_grad_from_state`,
which reads the state of either search.

A line search is the last member of a chain: it receives a *step* ``u`` (already a descent
direction, for example ``-lr * H g`` from ``chain(scale_by_lbfgs(), scale_lr(lr))``), picks a
step length ``eta >= 0`` along it, and returns ``eta * u``. It flips no sign.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._hyperparams import hyperparam_dtype
from optix._tree import tree_inner
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import OpenFraction
from optix.toolkit import Positive
from optix.toolkit import Values
from optix.toolkit import multiply
from optix.toolkit import transform


def value_dtype(params: Params) -> jnp.dtype:
    """The real dtype values, slopes and step lengths are kept in: at least the hyperparameter
    precision, and at least the (real) precision of every leaf."""
    dtype = hyperparam_dtype()
    for leaf in jax.tree.leaves(params):
        dtype = _tree.wider(dtype, _tree.real_dtype(leaf.dtype))
    return dtype


def slope_along(grad: Updates, updates: Updates) -> jax.Array:
    """The derivative of ``eta -> f(x + eta u)`` at the point where ``grad`` (as ``jax.grad``
    returns it) was taken: ``Re sum(grad * u)``."""
    return tree_inner(jax.tree.map(jnp.conj, grad), updates)


def step_along(params: Params, eta: jax.Array, updates: Updates) -> Params:
    """``params + eta * updates``, computed in at least float32, in each param's dtype."""
    return _tree.map_leaves(
        lambda p, u: (_tree.upcast(p) + eta * _tree.upcast(u)).astype(p.dtype), params, updates
    )


def line_search_inputs(
    transform: str, params: Any, value: Any, grad: Any, value_fn: Any, extra: dict
) -> tuple[Callable, dict]:
    """Check the keyword arguments a line search reads; return ``value_fn`` and the extra keyword
    arguments it accepts (data batches, say), which it is called with."""
    _validate.require_params(params, transform)
    for name, given in (("value", value), ("grad", grad), ("value_fn", value_fn)):
        if given is None:
            raise ValueError(
                f"`{transform}` needs `{name}=` passed to update: call `tx.update(grads, state, "
                "params, value=value, grad=grad, value_fn=value_fn)` where `value, grad = "
                "jax.value_and_grad(value_fn)(params)` (or `optix.value_and_grad_from_state`)."
            )
    if not callable(value_fn):
        raise TypeError(f"`{transform}`: `value_fn` must be callable, got {type(value_fn)}")
    try:
        sig = inspect.signature(value_fn).parameters
    except (TypeError, ValueError):
        return value_fn, {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values()):
        return value_fn, dict(extra)
    return value_fn, {k: v for k, v in extra.items() if k in sig}


def start_search(
    transform: str,
    spec: Hyperparams,
    updates: Any,
    state: Any,
    params: Any,
    inputs: tuple[Any, Any, Any, dict],
) -> tuple[Callable, dict, Values, HyperparamState, jax.Array]:
    """What a line search's update does first: check its ``inputs`` (``value``, ``grad``,
    ``value_fn`` and the extra keyword arguments, see :func:`line_search_inputs`) and the updates
    against the params. Returns ``value_fn``, the keyword arguments it takes, this step's
    hyperparameters in the dtype of the state's ``value``, the next hyperparameter state, and the
    value at the start point in that dtype."""
    value, grad, value_fn, extra = inputs
    fn, fn_kwargs = line_search_inputs(transform, params, value, grad, value_fn, extra)
    _validate.check_updates(updates, params, transform)
    h, hyperparams = spec.step(state.hyperparams)
    dt = state.value.dtype
    return fn, fn_kwargs, h.astype(dt), hyperparams, jnp.asarray(value).astype(dt)


def cast_like(tree: Any, like: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.asarray(x).astype(y.dtype), tree, like)


class BacktrackingInfo(NamedTuple):
    """What the last backtracking search did."""

    num_steps: jax.Array  # function evaluations made
    decrease_error: jax.Array  # > 0: no step with sufficient decrease was found


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """State of :func:`scale_by_backtracking_linesearch`."""

    hyperparams: HyperparamState  # c1, decrease_factor, increase_factor, max_stepsize, atol, rtol
    stepsize: jax.Array  # the step length accepted last
    value: jax.Array  # f at the accepted point (inf before the first search)
    grad: Updates | None  # grad f at the accepted point (only with store_grad)
    info: BacktrackingInfo


@transform(ScaleByBacktrackingLinesearchState)
def scale_by_backtracking_linesearch(
    max_backtracking_steps: int = 20,
    c1: OpenFraction = 1e-4,
    decrease_factor: OpenFraction = 0.8,
    increase_factor: Positive = 1.5,
    max_stepsize: Positive = 1.0,
    atol: NonNegative = 0.0,
    rtol: NonNegative = 0.0,
    *,
    store_grad: bool = False,
) -> GradientTransformation:
    r"""Scale a descent step ``u`` by the first ``eta`` that decreases ``f`` enough (Armijo).

    .. math::
        f(x + \eta u) \le (1 + \delta_r) f(x) + c_1 \eta \, \nabla f(x)^T u + \delta_a

    Trial steps are ``eta_0 = min(increase_factor * eta_prev, max_stepsize)``, then
    ``eta_{i+1} = decrease_factor * eta_i`` (Nocedal & Wright, Algorithm 3.1), at most
    ``max_backtracking_steps`` reductions. If no trial gives a finite value, the step is 0.
    This matches optax's ``scale_by_backtracking_linesearch`` (``c1`` is its ``slope_rtol``).

    ``update`` reads ``value`` (``f(x)``), ``grad`` (``grad f(x)``) and ``value_fn`` (``f``)
    from its keyword arguments; further keyword arguments that ``value_fn`` accepts (a data
    batch, say) are passed on to it.

    Args:
      max_backtracking_steps: the most reductions of the step per update (a Python int).
      c1: sufficient-decrease constant in (0, 1).
      decrease_factor: step reduction factor in (0, 1).
      increase_factor: the first trial is this times the previous accepted step (>= 1 lets the
        step grow back; ``inf`` always starts at ``max_stepsize``).
      max_stepsize: the largest step length tried.
      atol, rtol: absolute and relative slack in the decrease condition.
      store_grad: also compute ``grad f`` at the accepted point and keep it (with the value) in
        the state, for :func:`optix.value_and_grad_from_state`.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
      >>> tx = optix.chain(optix.sgd(1.0), optix.scale_by_backtracking_linesearch())
      >>> x = jnp.zeros(3)
      >>> state = tx.init(x)
      >>> value, grad = jax.value_and_grad(f)(x)
      >>> updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
      >>> bool(f(optix.apply_updates(x, updates)) < value)
      True

    Reference: Armijo, `Minimization of functions having Lipschitz continuous first partial
    derivatives <https://doi.org/10.2140/pjm.1966.16.1>`_, Pacific J. Math. 1966; Nocedal &
    Wright, "Numerical Optimization", Alg. 3.1.
    """
    _validate.check_int("max_backtracking_steps", max_backtracking_steps, minimum=0)
    spec = Hyperparams(
        c1=c1,
        decrease_factor=decrease_factor,
        increase_factor=increase_factor,
        max_stepsize=max_stepsize,
        atol=atol,
        rtol=rtol,
    )
    name = "scale_by_backtracking_linesearch"

    def init(params):
        _validate.check_float_leaves(params, f"`{name}` params")
        dt = value_dtype(params)
        return ScaleByBacktrackingLinesearchState(
            hyperparams=spec.init(),
            stepsize=jnp.ones([], dt),
            value=jnp.full([], jnp.inf, dt),
            grad=_tree.zeros_like(params) if store_grad else None,
            info=BacktrackingInfo(jnp.zeros([], jnp.int32), jnp.full([], jnp.inf, dt)),
        )

    def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra):
        inputs = (value, grad, value_fn, extra)
        fn, fn_kwargs, h, hyperparams, value0 = start_search(
            name, spec, updates, state, params, inputs
        )
        dt = state.value.dtype
        slope = slope_along(cast_like(grad, params), updates).astype(dt)

        def decrease_error(eta, new_value):
            err = new_value - (1 + h.rtol) * value0 - eta * h.c1 * slope
            return jnp.maximum(jnp.where(jnp.isnan(err), jnp.inf, err), 0)

        def cond(carry):
            eta, _, err, i = carry
            return ~(err <= h.atol) & (i <= max_backtracking_steps)

        def body(carry):
            eta, _, _, i = carry
            eta = jnp.where(i > 0, h.decrease_factor * eta, eta)
            new_value = jnp.asarray(fn(step_along(params, eta, updates), **fn_kwargs)).astype(dt)
            return eta, new_value, decrease_error(eta, new_value), i + 1

        eta0 = jnp.minimum(h.increase_factor * state.stepsize, h.max_stepsize)
        start = (eta0, value0, jnp.full([], jnp.inf, dt), jnp.zeros([], jnp.int32))
        eta, new_value, err, steps = jax.lax.while_loop(cond, body, start)
        stuck = jnp.isinf(err)  # no finite value anywhere: do not move
        eta = jnp.where(stuck, 0, eta).astype(dt)
        new_value = jnp.where(stuck, value0, new_value)
        new_grad = None
        if store_grad:
            new_grad = jax.lax.cond(
                stuck,
                lambda: cast_like(grad, params),
                lambda: cast_like(
                    jax.grad(fn)(step_along(params, eta, updates), **fn_kwargs), params
                ),
            )
        new_state = ScaleByBacktrackingLinesearchState(
            hyperparams, eta, new_value, new_grad, BacktrackingInfo(steps, err)
        )
        return multiply(updates, eta), new_state

    return GradientTransformation(init, update)
