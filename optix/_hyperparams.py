"""Hyperparameters kept as float arrays in optimizer state, and reached by name.

Every transform with float hyperparameters stores them in a :class:`HyperparamState` inside its own
state. Because they are arrays, not compiled constants, changing one between steps never
recompiles, and ``jax.vmap`` over a batch of states sweeps them in one compiled step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from optix import _paths, _validate
from optix._base import OptState


def hyperparam_dtype() -> jnp.dtype:
    """float32, or float64 when ``jax_enable_x64`` is on. Never the params' low precision."""
    return jnp.dtype(jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32)


class HyperparamState(NamedTuple):
    """The hyperparameters of one transform.

    Attributes:
      count: int32 number of updates this transform has made; it drives schedules and bias
        corrections.
      values: constant hyperparameters, settable with :func:`set_hyperparams`.
      scheduled: the value each schedule gave for the most recent update (its value at step 0
        right after ``init``); read-only.
    """

    count: jax.Array  # type: ignore[assignment]  # the field shadows tuple.count
    values: dict[str, jax.Array]
    scheduled: dict[str, jax.Array]


def _as_hyperparam(name: str, value: Any) -> jax.Array:
    value = jnp.asarray(value)
    if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
        raise TypeError(f"hyperparameter `{name}` must be a real number, got dtype {value.dtype}")
    return value.astype(hyperparam_dtype())


def increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the int32 maximum instead of wrapping around."""
    limit = jnp.iinfo(jnp.int32).max
    return jnp.where(count < limit, count + 1, count)


class Hyperparams:
    """Python-side description of a transform's hyperparameters (not part of the state).

    Each value is a number, or a schedule ``step -> value`` evaluated at the transform's count.
    """

    def __init__(self, **specs: Any):
        self._constants = {k: v for k, v in specs.items() if not callable(v)}
        self._schedules: dict[str, Callable] = {k: v for k, v in specs.items() if callable(v)}

    def init(self) -> HyperparamState:
        count = jnp.zeros([], jnp.int32)
        return HyperparamState(
            count=count,
            values={k: _as_hyperparam(k, v) for k, v in self._constants.items()},
            scheduled={k: _as_hyperparam(k, s(count)) for k, s in self._schedules.items()},
        )

    def step(self, state: HyperparamState) -> tuple[dict[str, jax.Array], HyperparamState]:
        """Values for the update at ``state.count``, and the state for the next one."""
        scheduled = {k: _as_hyperparam(k, s(state.count)) for k, s in self._schedules.items()}
        current = {**state.values, **scheduled}
        return current, HyperparamState(increment(state.count), state.values, scheduled)


# Rules applied by set_hyperparams to concrete values, by hyperparameter name.
_RULES: dict[str, Callable[[str, Any], None]] = {
    "learning_rate": _validate.check_nonnegative,
    "eps": _validate.check_nonnegative,
    "eps_root": _validate.check_nonnegative,
    "weight_decay": _validate.check_nonnegative,
    "b1": _validate.check_unit_interval,
    "b2": _validate.check_unit_interval,
    "decay": _validate.check_unit_interval,
    "rho": _validate.check_unit_interval,
    "momentum": _validate.check_unit_interval,
    "dampening": _validate.check_closed_unit_interval,
    "max_norm": _validate.check_nonnegative,
    "max_delta": _validate.check_nonnegative,
    "eta": _validate.check_nonnegative,
    "gamma": _validate.check_nonnegative,
    "momentum_decay": _validate.check_nonnegative,
    "threshold": _validate.check_nonnegative,
    "slow_step_size": _validate.check_closed_unit_interval,
    "clipping": _validate.check_nonnegative,
    "factor": _validate.check_finite,
    "rtol": _validate.check_nonnegative,
    "atol": _validate.check_nonnegative,
    "min_scale": _validate.check_nonnegative,
}


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
            if path and _paths.key_str(path[-1]) == "hyperparams":
                owner, path = type(_node_at(state, path[:-1])), path[:-1]
            found.append((_paths.parts(path), leaf, owner))
    return found


_OWNER_RULES: dict[tuple[type, str], Callable[[str, Any], None]] = {}


def register_rules(owner: type, **rules: Callable[[str, Any], None]) -> None:
    """Range checks that ``set_hyperparams`` applies to the hyperparameters of ``owner`` states,
    overriding the checks by name (``reduce_on_plateau``'s ``factor`` is not ``scale``'s)."""
    for name, rule in rules.items():
        _OWNER_RULES[(owner, name)] = rule


def _entries(state: Any) -> list[tuple[tuple[str, ...], str, bool, tuple]]:
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
    values are included: they are the values the most recent update used.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> state = optix.adam(1e-3).init({"w": jnp.zeros(3)})
      >>> float(optix.get_hyperparams(state)["learning_rate"])
      0.001...
    """
    entries = _entries(state)
    found = _find(state)
    out = {}
    for key, (_, name, settable, (index, _)) in zip(_short_keys(entries), entries, strict=True):
        hp = found[index][1]
        out[key] = hp.values[name] if settable else hp.scheduled[name]
    return out


def set_hyperparams(
    state: OptState, values: Mapping[str, ArrayLike] | None = None, /, **kwargs: ArrayLike
) -> OptState:
    """Return ``state`` with the named hyperparameters replaced; nothing else changes.

    Names may be plain (``learning_rate``) or paths (``"encoder/learning_rate"``); a path matches
    when its parts occur in that order in the hyperparameter's full path. Values keep the stored
    dtype (float32) and shape, so a jitted step does not recompile. A name that matches nothing,
    matches several places, or belongs to a schedule raises ``ValueError``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> state = optix.sgd(0.1).init({"w": jnp.zeros(3)})
      >>> state = optix.set_hyperparams(state, learning_rate=0.01)
      >>> float(optix.get_hyperparams(state)["learning_rate"])
      0.01...
    """
    requests = {**(values or {}), **kwargs}
    found = _find(state)
    entries = _entries(state)
    new_values = [dict(hp.values) for _, hp, _ in found]
    for address, value in requests.items():
        parts = tuple(p for p in address.split("/") if p)
        if not parts:
            raise ValueError(f"empty hyperparameter name {address!r}")
        hits = [e for e in entries if _paths.address_matches(parts, e[0])]
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
                "build the optimizer with a constant value to make it settable"
            )
        rule = _OWNER_RULES.get((found[index][2], name), _RULES.get(name))
        if rule is not None:
            rule(address, value)
        old = new_values[index][name]
        new = jnp.asarray(value)
        if np.shape(new) != old.shape:
            raise ValueError(
                f"hyperparameter {address!r} has shape {old.shape}, got a value of shape "
                f"{np.shape(new)}; to sweep values, vmap over set_hyperparams instead"
            )
        new_values[index][name] = new.astype(old.dtype)
    pairs, treedef = _flatten(state)
    updated = iter(new_values)
    leaves = [leaf._replace(values=next(updated)) if _is_hp(leaf) else leaf for _, leaf in pairs]
    return jax.tree.unflatten(treedef, leaves)
