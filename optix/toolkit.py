r"""What every transform is written with, so that its per-leaf math reads like the paper.

- **Ranges, declared once, next to the default.** A hyperparameter's annotation says its range:
  ``b1: Beta = 0.9`` (in ``[0, 1)``), ``eps: NonNegative = 1e-8``. The :func:`transform`
  decorator reads them: the factory checks each value when it is called (the error names the
  argument), and :func:`optix.set_hyperparams` applies the same check to a built state.
- **Values by name, one step counter.** ``h = spec.step(state.hyperparams)`` gives this update's
  values as attributes (``h.b1``, ``h.eps``) and its 1-based step number ``h.t``, the one
  counter a transform reads (bias corrections, schedules).
- **Casting in one place.** :func:`leafwise` runs ``fn(g, *state) -> (u, *new_state)`` with every
  input in its compute dtype (at least float32) and casts the results back: the update to the
  gradient's dtype, each state leaf to its own dtype.

- **A whole element-wise transform from its per-leaf rule.** :func:`per_leaf` does the rest:
  the checks of params and updates, the step counter, the casts and the state.

Example:
  A complete transform (momentum without dampening), written with the toolkit:

  >>> from typing import NamedTuple
  >>> import jax, jax.numpy as jnp, optix
  >>> from optix.toolkit import Beta, Hyperparams, per_leaf, transform
  >>> class TraceState(NamedTuple):
  ...     hyperparams: optix.HyperparamState
  ...     trace: optix.Updates
  >>> @transform(TraceState)
  ... def trace(decay: Beta = 0.9) -> optix.GradientTransformation:
  ...     def rule(h):  # this step's values: h.decay, and h.t the step number
  ...         def leaf(g, b):
  ...             b = h.decay * b + g
  ...             return b, b
  ...         return leaf
  ...     def init(params):
  ...         return (jax.tree.map(jnp.zeros_like, params),)
  ...     spec = Hyperparams(decay=decay)
  ...     return per_leaf("trace", TraceState, spec, init=init, rule=rule)
  >>> tx = trace(0.5)
  >>> state = tx.init(jnp.zeros(2))
  >>> tx.update(jnp.ones(2), state)[0]
  Array([1., 1.], dtype=float32)
  >>> trace(1.5)
  Traceback (most recent call last):
  ...
  ValueError: `decay` must be in [0, 1), got 1.5...
  >>> optix.set_hyperparams(state, decay=1.5)
  Traceback (most recent call last):
  ...
  ValueError: ...decay...
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from collections.abc import Mapping
from typing import Annotated
from typing import Any
from typing import TypeVar

import jax
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import ScalarOrSchedule
from optix._fusable import mark_elementwise
from optix._hyperparams import Hyperparams as Hyperparams
from optix._hyperparams import HyperparamState as HyperparamState
from optix._hyperparams import Values as Values
from optix._hyperparams import register_rules


class Range:
    """The values a hyperparameter may take: ``check(name, value)`` raises, naming ``name``,
    for a concrete value outside it (a schedule or a traced value is not checked)."""

    def __init__(self, check: Callable[[str, Any], None]):
        self.check = check

    def __repr__(self) -> str:
        return f"Range({self.check.__name__})"


Beta = Annotated[ScalarOrSchedule, Range(_validate.check_unit_interval)]
"""A decay or interpolation weight, in ``[0, 1)``."""
Fraction = Annotated[ScalarOrSchedule, Range(_validate.check_closed_unit_interval)]
"""A fraction in ``[0, 1]``."""
OpenFraction = Annotated[ScalarOrSchedule, Range(_validate.check_open_unit_interval)]
"""A fraction in ``(0, 1)``."""
NonNegative = Annotated[ScalarOrSchedule, Range(_validate.check_nonnegative)]
"""A finite number ``>= 0`` (learning rates, epsilons, weight decay, norms)."""
Positive = Annotated[ScalarOrSchedule, Range(_validate.check_positive)]
"""A finite number ``> 0``."""
Finite = Annotated[ScalarOrSchedule, Range(_validate.check_finite)]
"""Any finite number."""


def or_none(check: Callable[[str, Any], None]) -> Range:
    """The range of ``check``, or ``None`` (an optional term that is off when ``None``)."""

    def check_or_none(name: str, value: Any) -> None:
        if value is not None:
            check(name, value)

    check_or_none.__name__ = f"{check.__name__}_or_none"
    return Range(check_or_none)


BetaOrNone = Annotated[ScalarOrSchedule | None, or_none(_validate.check_unit_interval)]
"""A decay in ``[0, 1)``, or ``None`` (a default derived from another hyperparameter)."""
NonNegativeOrNone = Annotated[ScalarOrSchedule | None, or_none(_validate.check_nonnegative)]
"""A number ``>= 0``, or ``None`` (the term is off, or takes a default)."""
PositiveOrNone = Annotated[ScalarOrSchedule | None, or_none(_validate.check_positive)]
"""A number ``> 0``, or ``None`` (the term is off, or takes a default)."""


def ranges(factory: Callable[..., Any]) -> dict[str, Range]:
    """The declared range of each hyperparameter of ``factory``, by argument name."""
    hints = typing.get_type_hints(inspect.unwrap(factory), include_extras=True)
    return {
        name: meta
        for name, hint in hints.items()
        for meta in getattr(hint, "__metadata__", ())
        if isinstance(meta, Range)
    }


F = TypeVar("F", bound=Callable[..., Any])


def _checking(factory: F, declared: dict[str, Range]) -> F:
    """``factory``, checking each argument in ``declared`` against its range when called."""
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        for name, declared_range in declared.items():
            declared_range.check(name, arguments.arguments[name])
        return factory(*args, **kwargs)

    return typing.cast(F, build)


def checked(factory: F) -> F:
    """Decorate a factory so that it checks the ranges its signature declares when it is called
    (an alias that chains transforms: each argument is checked even when the term it feeds is
    left out, so ``sgd(0.1, dampening=2.0)`` raises rather than ignoring the value)."""
    return _checking(factory, ranges(factory))


def transform(state_cls: type) -> Callable[[F], F]:
    """Decorate a transform factory whose state is ``state_cls``: the ranges its signature
    declares are checked when it is called (as :func:`checked`), and by
    :func:`optix.set_hyperparams` on the hyperparameters of any ``state_cls`` state."""

    def decorate(factory: F) -> F:
        declared = ranges(factory)
        register_rules(state_cls, **{name: r.check for name, r in declared.items()})
        return _checking(factory, declared)

    return decorate


def arguments_for(fn: Callable[..., Any], scope: Mapping[str, Any]) -> dict[str, Any]:
    """Every argument of ``fn``, by name, taken from ``scope``: an alias's ``locals()`` when it
    offers all of its transform's options under the same names, so that it chains
    ``scale_by_x(**arguments_for(scale_by_x, locals()))`` instead of writing each one out again.
    Raises ``TypeError`` naming what ``scope`` lacks (an option the alias does not offer)."""
    names = list(inspect.signature(fn).parameters)
    missing = [name for name in names if name not in scope]
    if missing:
        raise TypeError(f"`{fn.__name__}` needs {missing}, which the caller does not have")
    return {name: scope[name] for name in names}


def leafwise(fn: Callable[..., Any], updates: Any, *state: Any) -> Any:
    """Apply ``fn`` leaf by leaf, with the casts done here rather than in ``fn``.

    ``fn(g, *s)`` gets the gradient leaf and the matching leaf of each tree in ``state``, all in
    their compute dtype (at least float32), and returns ``u`` alone when ``state`` is empty, else
    ``(u, *new_s)`` with one new leaf per state tree. The result is the updates tree (``u`` cast
    to the gradient's dtype), or the tuple ``(updates, *new_state)`` with each new state leaf cast
    to the dtype of the leaf it replaces (a ``bfloat16`` moment stays ``bfloat16``).
    """

    def leaf(g: jax.Array, *s: jax.Array) -> Any:
        out = fn(_tree.upcast(g), *(_tree.upcast(x) for x in s))
        if not s:
            return out.astype(g.dtype)
        u, *new = out
        return (u.astype(g.dtype), *(n.astype(x.dtype) for n, x in zip(new, s, strict=True)))

    return _tree.map_leaves(leaf, updates, *state, n_out=len(state) + 1 if state else None)


def per_leaf(
    name: str,
    state_cls: type,
    spec: Hyperparams,
    *,
    init: Callable[[Any], tuple[Any, ...]],
    rule: Callable[[Values], Callable[..., Any]],
    reads_params: bool = False,
) -> GradientTransformation:
    """The whole transform of an element-wise algorithm, from its per-leaf math.

    - ``init(params)`` returns the state's trees after ``hyperparams`` (``(mu, nu)``), in the
      order of ``state_cls``'s fields; a field that is ``None`` (an option that is off) stays
      ``None`` and is not passed to the rule.
    - ``rule(h)`` is called once per update with this step's values (``h.b1``, ``h.t``) and
      returns the per-leaf function ``fn(g, *s) -> (u, *new_s)`` that :func:`leafwise` runs. Work
      that is the same for every leaf (bias corrections, step sizes) goes in ``rule``, before the
      per-leaf function, so that it is done once per step.
    - ``reads_params``: ``params`` are required, checked against the updates, and passed to
      ``fn`` after the state leaves (read only: ``fn`` returns no new value for them).

    The transform checks float params at ``init`` and the updates against its state at
    ``update`` (errors name ``name``), and is marked element-wise for :func:`optix.fuse`.
    """

    def init_state(params: Any) -> Any:
        _validate.check_float_leaves(params, f"`{name}` params")
        return state_cls(spec.init(), *init(params))

    def update(updates: Any, state: Any, params: Any = None, **extra: Any) -> Any:
        del extra
        _, *fields = state
        live = [i for i, field in enumerate(fields) if field is not None]
        _validate.check_updates(updates, fields[live[0]], name)
        h, hyperparams = spec.step(state.hyperparams)
        fn, trees = rule(h), [fields[i] for i in live]
        if reads_params:
            _validate.require_params(params, name)
            _validate.check_matches_params(updates, params)
            fn_of_state = fn

            def fn(*args: jax.Array) -> Any:  # the param leaf is read, and given back unchanged
                return (*fn_of_state(*args), args[-1])

            trees.append(params)
        updates, *new = leafwise(fn, updates, *trees)
        for i, tree in zip(live, new, strict=False):
            fields[i] = tree
        return updates, state_cls(hyperparams, *fields)

    return mark_elementwise(GradientTransformation(init_state, update))


def multiply(updates: Any, factor: jax.Array) -> Any:
    """Each leaf times the scalar ``factor``, computed in at least float32 and cast back to the
    leaf's dtype (clipping factors, step sizes, learning rates)."""
    return leafwise(lambda g: g * factor, updates)


def is_off(value: Any) -> bool:
    """Whether an optional term (momentum, weight decay) is switched off by a literal ``0``: then
    the chain leaves it out, with no state and no work. A schedule or an array stays in, settable."""
    return not callable(value) and isinstance(value, int | float) and value == 0


def first_and_second_moments(
    params: Any, mu_dtype: DTypeLike | None, nu_dtype: DTypeLike | None
) -> tuple[Any, Any]:
    """Zero first and second moments shaped like ``params`` (Adam and its relatives): in
    ``mu_dtype`` / ``nu_dtype`` when given, else the param's dtype widened to at least float32;
    the second moment of a complex leaf is real."""
    mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
    return mu, _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")


__all__ = [
    "Beta",
    "BetaOrNone",
    "Finite",
    "Fraction",
    "HyperparamState",
    "Hyperparams",
    "NonNegative",
    "NonNegativeOrNone",
    "OpenFraction",
    "Positive",
    "PositiveOrNone",
    "Range",
    "Values",
    "arguments_for",
    "checked",
    "first_and_second_moments",
    "is_off",
    "leafwise",
    "multiply",
    "or_none",
    "per_leaf",
    "ranges",
    "transform",
]
