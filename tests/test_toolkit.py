"""The toolkit every transform is written with (optix/toolkit.py): a hyperparameter's range is
declared once, in the factory's signature, and enforced both when the factory is called and by
``set_hyperparams`` on a built state; ``leafwise`` keeps dtypes."""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import pytest

import optix
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import arguments_for
from optix.toolkit import leafwise
from optix.toolkit import ranges
from optix.toolkit import transform

_CANDIDATES = (-1.0, 1.0, 1.5, math.nan, math.inf, 0.0, 3.0)
_GOOD = (0.5, 0.1, 1.0, 5.0, 0.0)
# a wrapper's inner optimizer, by argument name (schedule_free's base is a direction)
_INNER = {
    "fast": lambda: optix.sgd(0.1),
    "optimizer": lambda: optix.sgd(0.1),
    "base_optimizer": lambda: optix.sgd(0.1),
    "base": optix.identity,
    "inner": optix.identity,
    "tx": lambda: optix.sgd(0.1),
    "magnitude_tx": lambda: optix.sgd(0.1),
    "direction_tx": lambda: optix.sgd(0.1),
}


def _first(values, accept):
    for v in values:
        try:
            accept(v)
        except (ValueError, TypeError):
            continue
        return v
    return None


def _bad_value(check, name):
    for v in _CANDIDATES:
        try:
            check(name, v)
        except ValueError:
            return v
    return None


def _declared():
    """(name, factory, its ranges) for every public factory that declares a range."""
    out = []
    for name in optix.__all__:
        fn = getattr(optix, name)
        if inspect.isfunction(fn) and ranges(fn):
            out.append((name, fn, ranges(fn)))
    return out


DECLARED = _declared()


def _required(fn, declared):
    """Values for the arguments without defaults, or None when one is not a ranged number."""
    kwargs = {}
    for p in inspect.signature(fn).parameters.values():
        if p.default is not inspect.Parameter.empty or p.kind is p.VAR_KEYWORD:
            continue
        if p.name in _INNER:  # a wrapper's inner optimizer
            kwargs[p.name] = _INNER[p.name]()
            continue
        if p.annotation == "int":  # a period or a count
            kwargs[p.name] = 2
            continue
        if p.name not in declared:
            return None
        good = _first(_GOOD, lambda v, p=p: declared[p.name].check(p.name, v))
        if good is None:
            return None
        kwargs[p.name] = good
    return kwargs


def test_most_public_factories_declare_their_ranges():
    # every optimizer alias has a learning rate, which is declared
    assert len(DECLARED) >= 100, [name for name, _, _ in DECLARED]


@pytest.mark.parametrize("name, fn, declared", DECLARED, ids=[d[0] for d in DECLARED])
def test_construction_checks_each_declared_range(name, fn, declared):
    base = _required(fn, declared)
    assert base is not None, f"{name}: give the test a value for its required arguments"
    for arg, r in declared.items():
        bad = _bad_value(r.check, arg)
        assert bad is not None, f"{name}: no value outside the range of `{arg}`"
        with pytest.raises(ValueError, match=f"`{arg}`"):
            fn(**{**base, arg: bad})


# Factories that take only some plain params: the params they are initialised with instead.
_PARAMS = {  # matrices only (muon routes vectors to Adam)
    "scale_by_muon": {"w": jnp.ones((3, 2))},
    "scale_by_normuon": {"w": jnp.ones((3, 2))},
}


@pytest.mark.parametrize("name, fn, declared", DECLARED, ids=[d[0] for d in DECLARED])
def test_set_hyperparams_checks_the_same_range(name, fn, declared):
    base = _required(fn, declared)
    params = _PARAMS.get(name, {"w": jnp.ones((3, 2)), "b": jnp.ones(2)})
    try:
        state = fn(**base).init(params)
    except (TypeError, ValueError):  # needs more than plain params (labels, a model, ...)
        pytest.fail(f"{name}: cannot init with plain params; extend the test")
    found = optix.get_hyperparams(state)
    checked = 0
    for arg, r in declared.items():
        if arg not in found:  # a schedule-only or renamed value, or one kept elsewhere
            continue
        bad = _bad_value(r.check, arg)
        with pytest.raises(ValueError, match=arg):
            optix.set_hyperparams(state, **{arg: bad})
        checked += 1
    assert checked or not any(a in found for a in declared)


def test_a_declared_range_is_checked_at_construction_and_in_state():
    from typing import NamedTuple

    class State(NamedTuple):
        hyperparams: optix.HyperparamState

    @transform(State)
    def decay_only(decay: Beta = 0.9) -> optix.GradientTransformation:
        spec = Hyperparams(decay=decay)
        return optix.GradientTransformation(
            lambda p: State(spec.init()), lambda u, s, p=None, **e: (u, s)
        )

    with pytest.raises(ValueError, match="`decay` must be in"):
        decay_only(1.0)
    state = decay_only(0.5).init({})
    with pytest.raises(ValueError, match="`decay` must be in"):
        optix.set_hyperparams(state, decay=1.0)
    assert float(optix.get_hyperparams(optix.set_hyperparams(state, decay=0.25))["decay"]) == 0.25


def test_leafwise_casts_back_to_each_inputs_dtype():
    g = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    m = {"a": jnp.zeros(3, jnp.bfloat16), "b": jnp.zeros(2, jnp.float32)}
    seen = []

    def fn(g, m):
        seen.append((g.dtype, m.dtype))
        return g * 3, m + g

    u, m_new = leafwise(fn, g, m)
    assert seen == [(jnp.float32, jnp.float32)] * 2  # math in at least float32
    assert jax.tree.map(lambda x: x.dtype, u) == {"a": jnp.bfloat16, "b": jnp.float32}
    assert jax.tree.map(lambda x: x.dtype, m_new) == {"a": jnp.bfloat16, "b": jnp.float32}
    assert leafwise(lambda g: -g, g)["a"].dtype == jnp.bfloat16


def test_step_values_by_name_and_one_counter():
    spec = Hyperparams(b1=0.9, lr=optix.schedules.constant(0.5))
    state = spec.init()
    for expected_t in (1, 2):
        h, state = spec.step(state)
        assert int(h.t) == expected_t
        assert float(h.b1) == pytest.approx(0.9) and float(h.lr) == 0.5
    with pytest.raises(AttributeError, match="b1"):
        _ = h.b3


def test_arguments_for_forwards_every_option_by_name_and_names_what_is_missing():
    def scale_by_x(b1=0.9, *, eps=1e-8):
        return b1, eps

    def x(learning_rate, b1=0.5, *, eps=1e-3):
        return scale_by_x(**arguments_for(scale_by_x, locals()))

    assert x(1.0) == (0.5, 1e-3)
    assert x(1.0, 0.25, eps=2.0) == (0.25, 2.0)
    with pytest.raises(TypeError, match=r"`scale_by_x` needs \['eps'\]"):
        arguments_for(scale_by_x, {"b1": 0.1})


@pytest.mark.parametrize(
    ("alias", "option", "value", "field"),
    [
        ("muon", "ns_steps", 3, None),
        ("soap", "block_size", 2, None),
        ("normuon", "ns_eps", 0.5, "ns_eps"),
        ("psgd_kron", "precond_lr", 0.3, "precond_lr"),
        ("shampoo", "stat_decay", 0.5, "stat_decay"),
    ],
)
def test_aliases_forward_their_transform_options(alias, option, value, field):
    """An alias that chains its transform with ``arguments_for`` hands each option on: the value
    reaches the transform's hyperparameters (or, for a static option, changes the update)."""
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)}
    grads = {"w": jnp.cos(jnp.arange(12.0)).reshape(4, 3)}

    def run(**kw):
        tx = getattr(optix, alias)(0.1, **kw)
        state = tx.init(params)
        for _ in range(2):
            updates, state = tx.update(grads, state, params)
        return updates, state

    if field is not None:
        _, state = run(**{option: value})
        assert float(optix.get_hyperparams(state)[field]) == pytest.approx(value)
    else:
        changed, _ = run(**{option: value})
        default, _ = run()
        assert not jnp.allclose(changed["w"], default["w"])
