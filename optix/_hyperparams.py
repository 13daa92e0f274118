"""Hyperparameters kept as float arrays in optimizer state, and reached by name.

Every transform with float hyperparameters stores them in a :class:`HyperparamState` inside its own
state. Because they are arrays, not compiled constants, changing one between steps never
recompiles, and ``jax.vmap`` over a batch of states sweeps them in one compiled step.

A hyperparameter driven by a schedule gets a settable companion, ``<name>_scale`` (1 at
``init``), which multiplies the schedule's value: it is how a scheduled learning rate is changed
mid-run. Optimizer state held by flax's ``nnx.Optimizer`` wraps each array in an ``nnx.Variable``;
the functions here read through the wrapper and keep it, so the state keeps its structure.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from optix import _keypath
from optix import _paths
from optix import _schedule_guard
from optix import _validate
from optix._base import OptState


def hyperparam_dtype() -> jnp.dtype:
    """float32, or float64 when ``jax_enable_x64`` is on. Never the params' low precision."""
    return jnp.dtype(_validate.stored_dtype())


class HyperparamState(NamedTuple):
    """The hyperparameters of one transform.

    Attributes:
      count: int32 number of updates this transform has made; it drives schedules and bias
        corrections.
      values: constant hyperparameters, settable with :func:`set_hyperparams`, and for each
        scheduled hyperparameter ``<name>`` its multiplier ``<name>_scale`` (1 at ``init``).
      scheduled: the value each schedule gave for the most recent update, times its
        ``<name>_scale`` (the schedule's value at step 0 right after ``init``); read-only.
    """

    count: jax.Array  # type: ignore[assignment]  # the field shadows tuple.count
    values: dict[str, jax.Array]
    scheduled: dict[str, jax.Array]


SCALE_SUFFIX = "_scale"


def unbox(x: Any) -> Any:
    """The array an nnx ``Variable`` holds (``nnx.Optimizer`` wraps its state's arrays in them);
    anything else as it is."""
    if _paths.is_nnx_variable(x):
        leaves = jax.tree.leaves(x)
        if len(leaves) == 1:
            return leaves[0]
    return x


def rebox(like: Any, value: Any) -> Any:
    """``value`` in a new ``Variable`` of the type and metadata of ``like`` when ``like`` is an
    nnx ``Variable``; else ``value`` itself."""
    if _paths.is_nnx_variable(like):
        return jax.tree.unflatten(jax.tree.structure(like), [value])
    return value


def pure(tree: Any) -> Any:
    """``tree`` with every nnx ``Variable`` replaced by the array it holds."""
    return jax.tree.map(unbox, tree, is_leaf=_paths.is_nnx_variable)


def _as_hyperparam(name: str, value: Any) -> jax.Array:
    _validate.check_scalar(name, value)
    value = jnp.asarray(value)
    if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
        raise TypeError(f"hyperparameter `{name}` must be a real number, got dtype {value.dtype}")
    # a fresh buffer, never the caller's array: state that shares a buffer cannot be donated
    return jnp.array(value, dtype=hyperparam_dtype(), copy=True)


def increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the int32 maximum instead of wrapping around."""
    limit = jnp.iinfo(jnp.int32).max
    return jnp.where(count < limit, count + 1, count)


class Hyperparams:
    """Python-side description of a transform's hyperparameters (not part of the state).

    Each value is a real scalar (checked here, naming it), or a schedule ``step -> value``
    evaluated at the transform's count and multiplied by the settable ``<name>_scale``.
    """

    def __init__(self, **specs: Any):
        for name, value in specs.items():
            _validate.check_scalar(name, value)
        self._constants = {k: v for k, v in specs.items() if not callable(v)}
        self._schedules: dict[str, Callable] = {k: v for k, v in specs.items() if callable(v)}
        for name in self._schedules:
            if name + SCALE_SUFFIX in specs:
                raise ValueError(
                    f"hyperparameter `{name}{SCALE_SUFFIX}` clashes with the scale of the "
                    f"schedule `{name}`"
                )

    def init(self) -> HyperparamState:
        count = jnp.zeros([], jnp.int32)
        scales = {k + SCALE_SUFFIX: jnp.ones([], hyperparam_dtype()) for k in self._schedules}
        return HyperparamState(
            count=count,
            values={**{k: _as_hyperparam(k, v) for k, v in self._constants.items()}, **scales},
            scheduled={k: _as_hyperparam(k, s(count)) for k, s in self._schedules.items()},
        )

    def step(self, state: HyperparamState) -> tuple[Values, HyperparamState]:
        """Values for the update at ``state.count``, and the state for the next one."""
        values, scheduled = dict(state.values), {}
        for k, s in self._schedules.items():
            value = _as_hyperparam(k, s(state.count)) * values.pop(k + SCALE_SUFFIX)
            scheduled[k] = _schedule_guard.in_range(k, value, state.count)
        count = increment(state.count)
        return Values({**values, **scheduled}, t=count), HyperparamState(
            count, state.values, scheduled
        )


class Values(dict):
    """One update's hyperparameter values, by name as attributes (``h.b1``), and ``h.t``: the
    1-based number of this update (the transform's count after it), the one step counter a
    transform reads."""

    def __init__(self, values: Mapping[str, jax.Array], *, t: jax.Array):
        super().__init__(values)
        self.t = t

    def astype(self, dtype: Any) -> Values:
        """These values cast to ``dtype`` (the count ``t`` kept)."""
        return Values({k: v.astype(dtype) for k, v in self.items()}, t=self.t)

    def __getattr__(self, name: str) -> jax.Array:
        try:
            return self[name]
        except KeyError:
            known = sorted(self)
            raise AttributeError(
                f"no hyperparameter {name!r}; this transform has {known}"
            ) from None


jax.tree_util.register_pytree_node(
    Values, lambda v: ((dict(v), v.t), None), lambda _, c: Values(c[0], t=c[1])
)


def _is_hp(x: Any) -> bool:
    return isinstance(x, HyperparamState)


def _flatten(state: Any) -> tuple[list, Any]:
    """``state`` flattened with each :class:`HyperparamState` kept whole, as (path, leaf) pairs."""
    return jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_hp)


def _node_at(tree: Any, path: tuple) -> Any:
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            tree = getattr(tree, key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            tree = tree[key.idx]
        elif isinstance(key, jax.tree_util.DictKey):
            tree = tree[key.key]
        else:
            return None
    return tree


def _find(state: Any) -> list[tuple[tuple[str, ...], HyperparamState, type | None]]:
    """(path, hyperparameters, class of the state holding them) for each set of hyperparameters.

    The ``hyperparams`` field name is left out of the path: it says nothing a user needs to type.
    """
    found = []
    for path, leaf in _flatten(state)[0]:
        if _is_hp(leaf):
            owner = None
            if path and _keypath.key_str(path[-1]) == "hyperparams":
                owner, path = type(_node_at(state, path[:-1])), path[:-1]
            found.append((_keypath.parts(path), leaf, owner))
    return found


_OWNER_RULES: dict[tuple[type, str], Callable[[str, Any], None]] = {}


def register_rules(owner: type, **rules: Callable[[str, Any], None]) -> None:
    """Range checks that ``set_hyperparams`` applies to the hyperparameters of ``owner`` states.
    Transforms declare them once, in their signature (:func:`optix.toolkit.transform` calls
    this); a name is checked per owner, so ``reduce_on_plateau``'s ``factor`` is not ``scale``'s."""
    for name, rule in rules.items():
        _OWNER_RULES[(owner, name)] = rule


def hyperparam_entries(state: Any) -> list[tuple[tuple[str, ...], str, bool, tuple]]:
    """(full path, name, settable, location) for every hyperparameter in ``state``."""
    out = []
    for index, (prefix, hp, _) in enumerate(_find(state)):
        for name in hp.values:
            out.append((prefix + (name,), name, True, (index, name)))
        for name in hp.scheduled:
            out.append((prefix + (name,), name, False, (index, name)))
    return out


def _short_keys(entries: list) -> list[str]:
    """Each entry's name, or its full path where the name alone is ambiguous."""
    counts: dict[str, int] = {}
    for _, name, _, _ in entries:
        counts[name] = counts.get(name, 0) + 1
    return [name if counts[name] == 1 else "/".join(full) for full, name, _, _ in entries]


def get_hyperparams(state: OptState) -> dict[str, jax.Array]:
    """All hyperparameters found anywhere in a (nested) optimizer state.

    A name that occurs once is its own key; a name found in several places (two learning rates in
    two branches of a partition, say) is keyed by its full ``/``-joined path instead. Scheduled
    values are included: they are the values the most recent update used, and so are their
    settable multipliers ``<name>_scale``. The values are arrays, also when ``state`` is an
    ``nnx.Optimizer``'s ``opt_state``, whose arrays sit in ``nnx.Variable`` wrappers.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> state = optix.adam(1e-3).init({"w": jnp.zeros(3)})
      >>> float(optix.get_hyperparams(state)["learning_rate"])
      0.001...
    """
    entries = hyperparam_entries(state)
    found = _find(state)
    out = {}
    for key, (_, name, settable, (index, _)) in zip(_short_keys(entries), entries, strict=True):
        hp = found[index][1]
        out[key] = unbox(hp.values[name] if settable else hp.scheduled[name])
    return out


def _rule(owner: type | None, hp: HyperparamState, name: str) -> Callable[[str, Any], None] | None:
    """The range check for ``name``: the same one the transform applies at construction."""
    if name.endswith(SCALE_SUFFIX) and name.removesuffix(SCALE_SUFFIX) in hp.scheduled:
        return _validate.check_nonnegative
    if owner is not None and (owner, name) in _OWNER_RULES:
        return _OWNER_RULES[(owner, name)]
    return None


def _check_value(address: str, value: Any, rule: Callable | None, old: jax.Array) -> None:
    """Type, shape and range checks of a new value for the hyperparameter ``old``."""
    if callable(value):
        raise TypeError(
            f"`{address}` must be a number: a built state cannot take a schedule; build the "
            "optimizer with the schedule instead"
        )
    if old.shape == ():
        _validate.check_scalar(address, value)
    if rule is None:
        return
    rule(address, value)
    stored = _validate.concrete_float(value)
    if stored is not None and np.dtype(old.dtype) != _validate.stored_dtype():
        # the state was built with the other x64 setting: check the value as this state keeps it
        with np.errstate(over="ignore", under="ignore"):
            cast = np.asarray(stored).astype(old.dtype)[()]
        try:
            rule(address, cast)
        except ValueError as error:
            raise ValueError(
                f"{error}: {value!r} rounds to {float(cast)!r} in {np.dtype(old.dtype).name}, "
                "the dtype this state keeps it in"
            ) from None


def set_hyperparams(
    state: OptState, values: Mapping[str, ArrayLike] | None = None, /, **kwargs: ArrayLike
) -> OptState:
    """Return ``state`` with the named hyperparameters replaced; nothing else changes.

    Names may be plain (``learning_rate``) or paths (``"encoder/learning_rate"``); a path matches
    when its parts occur in that order in the hyperparameter's full path, and a name that is one
    hyperparameter's whole path addresses that one (``"b1"`` is ``mars``'s own ``b1``, while
    ``"inner_state/b1"`` is the wrapped optimizer's). Values keep the stored dtype (float32) and
    shape, so a jitted step does not recompile. A name that matches nothing, matches several
    places, or belongs to a schedule raises ``ValueError``.

    A value gets the checks construction gives it: a real scalar (not a bool, string or array),
    in the hyperparameter's range as given and as stored (``b1=0.99999999`` is 1.0 in float32).

    A scheduled hyperparameter cannot be set, but it can be rescaled: ``<name>_scale`` (1 by
    default) multiplies the schedule's value from the next update on, with no recompile. Halving
    a scheduled learning rate mid-run is ``set_hyperparams(state, learning_rate_scale=0.5)``.

    ``state`` may be an ``nnx.Optimizer``'s ``opt_state``: each new value goes into a new
    ``nnx.Variable`` of the old one's type, so assigning the result back to ``opt_state`` keeps
    the structure (no retrace under ``nnx.jit``, checkpoints restore into a fresh optimizer).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> state = optix.sgd(0.1).init({"w": jnp.zeros(3)})
      >>> state = optix.set_hyperparams(state, learning_rate=0.01)
      >>> float(optix.get_hyperparams(state)["learning_rate"])
      0.01...
    """
    requests = {**(values or {}), **kwargs}
    found = _find(state)
    entries = hyperparam_entries(state)
    new_values = [dict(hp.values) for _, hp, _ in found]
    for address, value in requests.items():
        parts = tuple(p for p in address.split("/") if p)
        if not parts:
            raise ValueError(f"empty hyperparameter name {address!r}")
        hits = [e for e in entries if _paths.address_matches(parts, e[0])]
        exact = [e for e in hits if tuple(e[0]) == parts]
        if len(hits) > 1 and len(exact) == 1:  # a full path names its own entry: a wrapper's
            hits = exact  # `b1` is "b1", the inner optimizer's "inner_state/0/b1"
        if not hits:
            known = ", ".join(sorted(_short_keys(entries))) or "none"
            raise ValueError(f"no hyperparameter {address!r} in this state; it has: {known}")
        if len(hits) > 1:
            where = ", ".join("/".join(e[0]) for e in hits)
            raise ValueError(f"hyperparameter {address!r} is ambiguous; address one of: {where}")
        full, name, settable, (index, _) = hits[0]
        if not settable:
            raise ValueError(
                f"hyperparameter '{'/'.join(full)}' is driven by a schedule and cannot be set; "
                f"to rescale it from the next update on, set '{'/'.join(full)}{SCALE_SUFFIX}' "
                "(a factor that multiplies the schedule, 1 by default), or build the optimizer "
                "with a constant value to make it settable"
            )
        _, hp, owner = found[index]
        boxed = new_values[index][name]
        old = unbox(boxed)
        _check_value(address, value, _rule(owner, hp, name), old)
        new = jnp.asarray(value)
        if np.shape(new) != old.shape:
            raise ValueError(
                f"hyperparameter {address!r} has shape {old.shape}, got a value of shape "
                f"{np.shape(new)}; to sweep values, vmap over set_hyperparams instead"
            )
        new_values[index][name] = rebox(boxed, new.astype(old.dtype))
    pairs, treedef = _flatten(state)
    updated = iter(new_values)
    leaves = [leaf._replace(values=next(updated)) if _is_hp(leaf) else leaf for _, leaf in pairs]
    return jax.tree.unflatten(treedef, leaves)
