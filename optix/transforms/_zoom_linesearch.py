"""The zoom line search: a step length satisfying the strong Wolfe conditions (Nocedal & Wright,
Algorithms 3.5 and 3.6), run in one ``lax.while_loop``; and :func:`value_and_grad_from_state`,
which reuses the evaluation either line search (zoom or backtracking) keeps in its state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._base import Updates
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import NonNegativeOrNone
from optix.toolkit import OpenFraction
from optix.toolkit import Positive
from optix.toolkit import PositiveOrNone
from optix.toolkit import multiply
from optix.toolkit import transform
from optix.transforms._linesearch import ScaleByBacktrackingLinesearchState
from optix.transforms._linesearch import cast_like
from optix.transforms._linesearch import slope_along
from optix.transforms._linesearch import start_search
from optix.transforms._linesearch import step_along
from optix.transforms._linesearch import value_dtype


class ZoomLinesearchInfo(NamedTuple):
    """What the last zoom search did. A positive ``decrease_error`` means no step with
    sufficient decrease was found; a positive ``curvature_error`` alone is benign (the interval
    became smaller than ``stepsize_precision`` first)."""

    num_steps: jax.Array  # function and gradient evaluations made
    decrease_error: jax.Array
    curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
    """State of :func:`scale_by_zoom_linesearch`."""

    hyperparams: HyperparamState  # c1, c2, increase_factor, tol, stepsize_precision, ...
    stepsize: jax.Array  # the step length accepted last
    value: jax.Array  # f at the accepted point (inf before the first search)
    grad: Updates  # grad f at the accepted point
    info: ZoomLinesearchInfo


class _Search(NamedTuple):
    steps: jax.Array
    stepsize: jax.Array
    value: jax.Array
    grad: Any
    slope: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array
    interval_found: jax.Array
    done: jax.Array
    failed: jax.Array
    low: jax.Array
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    ref: jax.Array  # third point for the cubic: the end point the last zoom step replaced
    value_ref: jax.Array
    safe_stepsize: jax.Array  # best step found so far with sufficient decrease (0: none)
    safe_value: jax.Array
    safe_grad: Any


def _where(flag: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.where(flag, x, y), a, b)


def _cubic_min(a, fa, fpa, b, fb, c, fc):
    """Minimizer of the cubic through (a, fa), (b, fb), (c, fc) with slope fpa at a (NaN when
    there is none; the caller then rejects it)."""
    db, dc = b - a, c - a
    rb, rc = fb - fa - fpa * db, fc - fa - fpa * dc
    denom = (db * dc) ** 2 * (db - dc)
    big_a = (dc**2 * rb - db**2 * rc) / denom
    big_b = (-(dc**3) * rb + db**3 * rc) / denom
    return a + (-big_b + jnp.sqrt(big_b * big_b - 3 * big_a * fpa)) / (3 * big_a)


def _quad_min(a, fa, fpa, b, fb):
    """Minimizer of the quadratic through (a, fa), (b, fb) with slope fpa at a."""
    db = b - a
    curvature = (fb - fa - fpa * db) / (db * db)
    return a - fpa / (2 * curvature)


@transform(ScaleByZoomLinesearchState)
def scale_by_zoom_linesearch(
    max_linesearch_steps: int = 20,
    c1: OpenFraction = 1e-4,
    c2: OpenFraction = 0.9,
    increase_factor: Positive = 2.0,
    max_stepsize: PositiveOrNone = None,
    tol: NonNegative = 0.0,
    approx_decrease_rtol: NonNegativeOrNone = 1e-6,
    stepsize_precision: NonNegative = 1e-5,
    *,
    initial_guess_strategy: str = "keep",
) -> GradientTransformation:
    r"""Scale a descent step ``u`` by an ``eta`` satisfying the strong Wolfe conditions.

    .. math::
        f(x + \eta u) \le f(x) + c_1 \eta \, \nabla f(x)^T u, \qquad
        |\nabla f(x + \eta u)^T u| \le c_2 \, |\nabla f(x)^T u|

    Bracketing (Nocedal & Wright, Algorithm 3.5) tries ``eta_0`` (1, or the previous accepted
    step with ``initial_guess_strategy="keep"``), then multiplies it by ``increase_factor`` until
    an interval containing an acceptable step is found; zoom (Algorithm 3.6) then shrinks that
    interval, taking each trial at the minimizer of the cubic through the interval's end points
    and the point it replaced last, else of the quadratic, else at the midpoint (the safeguards
    of Nocedal & Wright section 3.5 and scipy: cubic only inside the middle 60 % of the interval,
    quadratic inside the middle 80 %). Each trial costs one ``value_and_grad`` of ``value_fn``.

    Two additions follow optax's ``scale_by_zoom_linesearch`` (our reference): the decrease
    condition is also met by Hager and Zhang's approximate Wolfe condition ``f'(eta) <= (2 c_1 -
    1) f'(0)`` where ``f(x + eta u) <= f(x) + approx_decrease_rtol |f(x)|`` (which resolves the
    decrease to machine precision instead of its square root; ``None`` turns it off); and the
    search stops with the best sufficient-decrease step found once the interval is shorter than
    ``stepsize_precision`` or ``max_linesearch_steps`` evaluations were made. If no trial gave
    sufficient decrease, the last trial is taken, or no step when the values were not finite.

    ``update`` reads ``value`` (``f(x)``), ``grad`` (``grad f(x)``, as ``jax.grad`` returns it) and
    ``value_fn`` (``f``) from its keyword arguments; further keyword arguments that ``value_fn``
    accepts (a data batch, say) are passed on to it. The value and gradient at the accepted point
    stay in the state, for :func:`optix.value_and_grad_from_state`.

    Args:
      max_linesearch_steps: the most evaluations per update (a Python int).
      c1: sufficient-decrease constant, ``0 < c1 < c2``.
      c2: curvature constant, ``c1 < c2 < 1`` (0.9 for quasi-Newton methods).
      increase_factor: growth of the trial step while bracketing, > 1.
      max_stepsize: the largest step length tried, or None for no bound.
      tol: slack allowed in both conditions.
      approx_decrease_rtol: see above; None for the exact Armijo condition only.
      stepsize_precision: the interval length below which zoom stops.
      initial_guess_strategy: ``"one"`` (first trial 1, right for quasi-Newton directions) or
        ``"keep"`` (the previous accepted step, for gradient directions).

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
      >>> tx = optix.chain(optix.sgd(1.0), optix.scale_by_zoom_linesearch(15))
      >>> x = jnp.zeros(3)
      >>> value, grad = jax.value_and_grad(f)(x)
      >>> updates, state = tx.update(grad, tx.init(x), x, value=value, grad=grad, value_fn=f)
      >>> print(optix.apply_updates(x, updates))
      [1. 1. 1.]

    Reference: Nocedal & Wright, "Numerical Optimization", 2nd ed. 2006, Algorithms 3.5, 3.6;
    Hager & Zhang, "Algorithm 851: CG_DESCENT", ACM TOMS 2006 (approximate Wolfe condition).
    """
    _validate.check_int("max_linesearch_steps", max_linesearch_steps, minimum=1)
    c1_, c2_ = _validate.concrete_float(c1), _validate.concrete_float(c2)
    if c1_ is not None and c2_ is not None and not c1_ < c2_:
        raise ValueError(f"the Wolfe conditions need `c1` < `c2`, got c1={c1!r}, c2={c2!r}")
    if initial_guess_strategy not in ("one", "keep"):
        raise ValueError(
            f"`initial_guess_strategy` must be 'one' or 'keep', got {initial_guess_strategy!r}"
        )
    specs: dict[str, Any] = dict(
        c1=c1,
        c2=c2,
        increase_factor=increase_factor,
        tol=tol,
        stepsize_precision=stepsize_precision,
    )
    if max_stepsize is not None:
        specs["max_stepsize"] = max_stepsize
    if approx_decrease_rtol is not None:
        specs["approx_decrease_rtol"] = approx_decrease_rtol
    spec = Hyperparams(**specs)
    name = "scale_by_zoom_linesearch"

    def init(params):
        _validate.check_float_leaves(params, f"`{name}` params")
        dt = value_dtype(params)
        inf = jnp.full([], jnp.inf, dt)
        return ScaleByZoomLinesearchState(
            hyperparams=spec.init(),
            stepsize=jnp.ones([], dt),
            value=inf,
            grad=_tree.zeros_like(params),
            info=ZoomLinesearchInfo(jnp.zeros([], jnp.int32), inf, inf),
        )

    def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra):
        inputs = (value, grad, value_fn, extra)
        fn, fn_kwargs, h, hyperparams, value0 = start_search(
            name, spec, updates, state, params, inputs
        )
        dt = state.value.dtype
        value_and_grad = jax.value_and_grad(lambda p: fn(p, **fn_kwargs))
        grad0 = cast_like(grad, params)
        slope0 = slope_along(grad0, updates).astype(dt)

        def evaluate(eta):
            v, g = value_and_grad(step_along(params, eta, updates))
            g = cast_like(g, params)
            return jnp.asarray(v).astype(dt), g, slope_along(g, updates).astype(dt)

        def errors(eta, v, slope):
            armijo = v - value0 - h.c1 * eta * slope0
            if "approx_decrease_rtol" in h:
                approx = jnp.maximum(
                    slope - (2 * h.c1 - 1) * slope0,
                    v - value0 - h.approx_decrease_rtol * jnp.abs(value0),
                )
                armijo = jnp.minimum(armijo, approx)
            curvature = jnp.abs(slope) - h.c2 * jnp.abs(slope0)
            clean = lambda e: jnp.where(jnp.isnan(e), jnp.inf, jnp.maximum(e, 0))  # noqa: E731
            return clean(armijo), clean(curvature)

        def bracket_trial(c: _Search) -> tuple[jax.Array, jax.Array]:
            guess = jnp.ones([], dt) if initial_guess_strategy == "one" else state.stepsize
            eta = jnp.where(c.steps == 0, guess, h.increase_factor * c.stepsize)
            if "max_stepsize" in h:
                return jnp.minimum(eta, h.max_stepsize), eta >= h.max_stepsize
            return eta, jnp.zeros([], bool)

        def zoom_trial(c: _Search) -> tuple[jax.Array, jax.Array]:
            lo, hi = c.low, c.high
            delta = jnp.abs(hi - lo)
            left, right = jnp.minimum(lo, hi), jnp.maximum(lo, hi)
            cubic = _cubic_min(lo, c.value_low, c.slope_low, hi, c.value_high, c.ref, c.value_ref)
            quad = _quad_min(lo, c.value_low, c.slope_low, hi, c.value_high)
            use_cubic = (cubic > left + 0.2 * delta) & (cubic < right - 0.2 * delta)
            use_quad = (quad > left + 0.1 * delta) & (quad < right - 0.1 * delta)
            eta = jnp.where(use_cubic, cubic, jnp.where(use_quad, quad, (lo + hi) / 2))
            return eta, delta <= h.stepsize_precision

        def body(c: _Search) -> _Search:
            b_eta, at_max = bracket_trial(c)
            z_eta, too_small = zoom_trial(c)
            eta = jnp.where(c.interval_found, z_eta, b_eta).astype(dt)
            v, g, slope = evaluate(eta)
            dec, curv = errors(eta, v, slope)
            ok = jnp.maximum(dec, curv) <= h.tol
            sufficient = dec <= h.tol
            trial = (eta, v, slope)
            last = (c.stepsize, c.value, c.slope)
            count = c.steps + 1
            out_of_steps = count >= max_linesearch_steps

            # Algorithm 3.5: bracketing
            high_is_new = (dec > 0) | ((v >= c.value) & (c.steps > 0))
            low_is_new = (slope >= 0) & ~high_is_new
            lo_b, hi_b = _where(low_is_new, (trial, last), (last, trial))
            found_b = high_is_new | low_is_new | ok
            done_b = ok | (at_max & ~found_b)
            safe_b = _where(sufficient, (eta, v, g), (c.safe_stepsize, c.safe_value, c.safe_grad))
            bracket = (lo_b, hi_b, lo_b[:2], found_b, done_b, safe_b, out_of_steps & ~done_b)

            # Algorithm 3.6: zoom
            lo, hi = (c.low, c.value_low, c.slope_low), (c.high, c.value_high, c.slope_high)
            high_to_trial = (dec > 0) | (v >= c.value_low)
            high_to_low = (slope * (c.high - c.low) >= 0) & ~high_to_trial
            hi_z = _where(high_to_trial, trial, _where(high_to_low, lo, hi))
            lo_z = _where(high_to_trial, lo, trial)
            ref_z = _where(high_to_trial | high_to_low, hi[:2], lo[:2])
            better = sufficient & (v < c.safe_value)
            safe_z = _where(better, (eta, v, g), (c.safe_stepsize, c.safe_value, c.safe_grad))
            failed_z = (out_of_steps | (too_small & (safe_z[0] > 0))) & ~ok
            zoom = (lo_z, hi_z, ref_z, c.interval_found, ok, safe_z, failed_z)

            lo, hi, ref, found, done, safe, failed = _where(c.interval_found, zoom, bracket)
            new = _Search(
                count, eta, v, g, slope, dec, curv, found, done, failed,
                *lo, *hi, *ref, *safe,
            )  # fmt: skip
            # Out of steps (or of interval) without an acceptable step: fall back to the best step
            # with sufficient decrease, or to no step if the last value was not finite.
            use_safe = failed & ((new.safe_stepsize > 0) | jnp.isinf(dec))
            chosen = _where(
                use_safe, (new.safe_stepsize, new.safe_value, new.safe_grad), (eta, v, g)
            )
            return new._replace(stepsize=chosen[0], value=chosen[1], grad=chosen[2])

        zero = jnp.zeros([], dt)
        inf = jnp.full([], jnp.inf, dt)
        false = jnp.zeros([], bool)
        start = _Search(
            jnp.zeros([], jnp.int32), zero, value0, grad0, slope0, inf, inf, false, false, false,
            zero, value0, slope0, zero, value0, slope0, zero, value0, zero, value0, grad0,
        )  # fmt: skip
        final = jax.lax.while_loop(lambda c: ~(c.done | c.failed), body, start)
        info = ZoomLinesearchInfo(final.steps, final.decrease_error, final.curvature_error)
        new_state = ScaleByZoomLinesearchState(
            hyperparams, final.stepsize, final.value, final.grad, info
        )
        return multiply(updates, final.stepsize), new_state

    return GradientTransformation(init, update)


def _line_search_states(state: OptState) -> list[Any]:
    kinds = (ScaleByZoomLinesearchState, ScaleByBacktrackingLinesearchState)
    nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, kinds))
    return [n for n in nodes if isinstance(n, kinds)]


def value_and_grad_from_state(
    value_fn: Callable[..., jax.Array],
) -> Callable[..., tuple[jax.Array, Updates]]:
    """Like ``jax.value_and_grad(value_fn)``, reusing what the line search already computed.

    A line search evaluates ``f`` and ``grad f`` at the point it accepts, which is the next
    iterate, and keeps both in its state. The returned function ``(params, *args, state,
    **kwargs) -> (value, grad)`` reads them from ``state`` (the whole optimizer state; the one
    line-search state inside it is found by type), so each iteration costs no extra evaluation.
    Before the first update the stored value is ``inf``, and then ``value_fn`` is evaluated
    (inside a ``lax.cond``, so this works under ``jit``). Only valid for a deterministic
    objective: with a changing data batch, call ``jax.value_and_grad`` instead.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
      >>> tx = optix.lbfgs()
      >>> x = jnp.zeros(3)
      >>> state = tx.init(x)
      >>> value_and_grad = optix.value_and_grad_from_state(f)
      >>> for _ in range(3):
      ...     value, grad = value_and_grad(x, state=state)
      ...     updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
      ...     x = optix.apply_updates(x, updates)
      >>> float(f(x)) < 1e-10
      True

    Reference: the same protocol as optax's ``value_and_grad_from_state``.
    """

    def value_and_grad(
        params: Params, *args: Any, state: OptState, **kwargs: Any
    ) -> tuple[jax.Array, Updates]:
        found = _line_search_states(state)
        if len(found) != 1:
            raise ValueError(
                "value_and_grad_from_state needs an optimizer state with exactly one line-search "
                f"state in it (from `scale_by_zoom_linesearch` or "
                f"`scale_by_backtracking_linesearch`); found {len(found)}"
            )
        ls = found[0]
        if ls.grad is None:
            raise ValueError(
                "the line search keeps no gradient: build it with "
                "`scale_by_backtracking_linesearch(..., store_grad=True)`"
            )

        def fresh():
            v, g = jax.value_and_grad(value_fn)(params, *args, **kwargs)
            return jnp.asarray(v).astype(ls.value.dtype), cast_like(g, ls.grad)

        return jax.lax.cond(jnp.isfinite(ls.value), lambda: (ls.value, ls.grad), fresh)

    return value_and_grad
