"""param_ema, swa and averaged_params.

The averages are checked against NumPy running averages of the param trajectory that a real
optimizer (Adam on a noisy quadratic) produces over ``N_STEPS`` steps: the trajectory is recorded
(the params after each ``apply_updates``, exactly as stored), the expected EMA or mean is computed
from it in float64, and ``averaged_params`` must match at every step.

Tolerance: the averages are kept in float32 (the default for float32 and bf16 params), so each
step rounds the average once (relative 6e-8); over 150 steps of a contracting recursion (EMA) or
an incremental mean (SWA) these errors add up to at most about 150 * 6e-8 = 1e-5 relative; we use
``rtol=2e-5`` with ``atol=1e-6`` for elements near zero. A convention error (the average taken
before instead of after the update, a step missed by SWA's schedule, a bias correction a step off)
changes the result by the size of one Adam step (about 1e-2), three orders of magnitude more.

For bf16 params the average is kept in float32 too, but the params it averages are only defined
to bf16's resolution: inside ``jit`` XLA may skip the rounding of ``params + updates`` (and of the
updates) to bf16 before the float32 average reads them (its default "excess precision"), while the
recorded trajectory is rounded. Each averaged value can then differ from the recorded one by half
a bf16 ulp, ``2**-8`` relative to the largest param, and so can the average: that is the bf16
``atol``. Keeping the average itself in bf16 (``ema_dtype``) loses far more, which is checked.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from optix.wrappers._average import ParamEmaState
from optix.wrappers._average import SwaState
from optix.wrappers._average import averaged_params
from optix.wrappers._average import param_ema
from optix.wrappers._average import swa
from optix.wrappers._lookahead import lookahead
from tests.problems import NOISY_SHAPES
from tests.problems import noisy_quadratic

N_STEPS = 150
SHAPES = NOISY_SHAPES
RTOL, ATOL = 2e-5, 1e-6


def _problem(seed: int = 0):
    return noisy_quadratic(N_STEPS, seed)


def _run(tx, dtype=jnp.float32, seed: int = 0):
    """Train on a noisy quadratic with a jitted step that chex checks is traced once; return the
    params trajectory (as float64 NumPy, and as the arrays themselves, p_0 .. p_T) and the states
    after each step."""
    curvature, target, noise, p0 = _problem(seed)
    a = {k: jnp.asarray(v, jnp.float32) for k, v in curvature.items()}
    b = {k: jnp.asarray(v, jnp.float32) for k, v in target.items()}
    chex.clear_trace_counter()  # chex counts per definition site, which every run shares

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, n):
        grads = {
            k: (a[k] * (params[k].astype(jnp.float32) - b[k]) + n[k]).astype(params[k].dtype)
            for k in params
        }
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    params = {k: jnp.asarray(v, dtype) for k, v in p0.items()}
    state = tx.init(params)
    trajectory, states = [params], []
    for n in noise:
        params, state = step(params, state, {k: jnp.asarray(v, jnp.float32) for k, v in n.items()})
        trajectory.append(params)
        states.append(state)
    as_np = [
        {k: np.asarray(v.astype(jnp.float32), np.float64) for k, v in p.items()} for p in trajectory
    ]
    return as_np, trajectory, states


_read = jax.jit(averaged_params)


@functools.cache
def _plain_trajectory(dtype):
    return _run(optix.adam(0.05), dtype)[0]


def _atol(dtype, trajectory) -> float:
    """``ATOL``; for bf16, half a bf16 ulp of the largest param (see the module docstring)."""
    if dtype != jnp.bfloat16:
        return ATOL
    return 2.0**-8 * max(float(np.max(np.abs(p[k]))) for p in trajectory for k in SHAPES)


def _assert_close(got, want, what, atol=ATOL):
    for k in SHAPES:
        np.testing.assert_allclose(
            np.asarray(got[k].astype(jnp.float32)),
            want[k],
            rtol=RTOL,
            atol=atol,
            err_msg=f"{what}, {k}",
        )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("debias", [False, True], ids=["plain", "debias"])
def test_param_ema_is_the_numpy_ema_of_the_trajectory(dtype, debias):
    decay = 0.9
    tx = optix.chain(optix.adam(0.05), param_ema(decay, debias=debias))
    traj, _, states = _run(tx, dtype)
    plain = _plain_trajectory(dtype)  # updates pass through unchanged
    for t in range(N_STEPS + 1):
        for k in SHAPES:
            np.testing.assert_array_equal(traj[t][k], plain[t][k])
    ema = {k: np.zeros(s) if debias else traj[0][k] for k, s in SHAPES.items()}
    for t in range(1, N_STEPS + 1):
        ema = {k: decay * ema[k] + (1 - decay) * traj[t][k] for k in SHAPES}
        want = {k: v / (1 - decay**t) for k, v in ema.items()} if debias else ema
        got = _read(states[t - 1])
        assert all(got[k].dtype == jnp.float32 for k in SHAPES)  # bf16 averages in float32
        _assert_close(got, want, f"step {t}", _atol(dtype, traj))
    # The average moved well away from the (converged, noisy) final params: it is an average.
    assert max(float(np.max(np.abs(want[k] - traj[-1][k]))) for k in SHAPES) > 1e-2
    # With params, the average comes back in their dtype.
    final = averaged_params(states[-1], {k: jnp.zeros(s, dtype) for k, s in SHAPES.items()})
    assert all(final[k].dtype == dtype for k in SHAPES)


def test_param_ema_decay_schedule_debiased_by_the_tracked_weight():
    schedule = lambda t: jnp.minimum(0.95, (1 + t) / (10 + t))  # noqa: E731
    tx = optix.chain(optix.adam(0.05), param_ema(schedule, debias=True))
    traj, _, states = _run(tx, seed=1)
    ema = {k: np.zeros(s) for k, s in SHAPES.items()}
    weight = 0.0
    for t in range(1, N_STEPS + 1):
        # the schedule is read at the 0-based count, in float32
        d = float(np.minimum(np.float32(0.95), np.float32(t) / np.float32(9 + t)))
        ema = {k: d * ema[k] + (1 - d) * traj[t][k] for k in SHAPES}
        weight = d * weight + (1 - d)
        _assert_close(_read(states[t - 1]), {k: v / weight for k, v in ema.items()}, f"step {t}")


def test_param_ema_bf16_average_keeps_what_bf16_would_lose():
    """A float32 average of bf16 params tracks movements below bf16's resolution."""
    tx = optix.chain(optix.adam(0.05), param_ema(0.99, ema_dtype=jnp.bfloat16))
    traj, _, states = _run(tx, jnp.bfloat16)
    assert states[-1][1].ema["matrix"].dtype == jnp.bfloat16
    ema = traj[0]
    for t in range(1, N_STEPS + 1):
        ema = {k: 0.99 * ema[k] + 0.01 * traj[t][k] for k in SHAPES}
    lossy = max(
        float(np.max(np.abs(np.asarray(_read(states[-1])[k].astype(jnp.float32)) - ema[k])))
        for k in SHAPES
    )
    tx = optix.chain(optix.adam(0.05), param_ema(0.99))
    _, _, states = _run(tx, jnp.bfloat16)
    atol = _atol(jnp.bfloat16, traj)
    _assert_close(_read(states[-1]), ema, "float32 average", atol)
    assert lossy > 10 * atol  # a bf16 average is far off


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("start_step, every_k", [(0, 1), (30, 7), (1, 3)])
def test_swa_is_the_numpy_mean_of_the_selected_params(dtype, start_step, every_k):
    tx = optix.chain(optix.adam(0.05), swa(start_step, every_k))
    traj, params, states = _run(tx, dtype)
    selected = [
        t for t in range(1, N_STEPS + 1) if t >= start_step and (t - start_step) % every_k == 0
    ]
    for t in range(1, N_STEPS + 1):
        chosen = [s for s in selected if s <= t]
        state = states[t - 1]
        assert int(state[1].n_averaged) == len(chosen) and int(state[1].count) == t
        if not chosen:  # no average yet: params come back, and without them it is an error
            got = averaged_params(state, params[t])
            for k in SHAPES:
                np.testing.assert_array_equal(got[k], params[t][k])
            with pytest.raises(ValueError, match="has not averaged any params yet"):
                averaged_params(state)
            continue
        want = {k: np.mean([traj[s][k] for s in chosen], axis=0) for k in SHAPES}
        got = _read(state)
        assert all(got[k].dtype == jnp.float32 for k in SHAPES)
        _assert_close(got, want, f"step {t}", _atol(dtype, traj))


def test_debiased_ema_before_any_update_has_no_average():
    params = {"w": jnp.ones(3)}
    state = optix.chain(optix.sgd(0.1), param_ema(0.9, debias=True)).init(params)
    with pytest.raises(ValueError, match="ParamEmaState at '1' has not averaged any params yet"):
        averaged_params(state)
    np.testing.assert_array_equal(averaged_params(state, params)["w"], params["w"])
    plain = optix.chain(optix.sgd(0.1), param_ema(0.9)).init(params)  # starts at the params
    np.testing.assert_array_equal(averaged_params(plain)["w"], params["w"])


def _params():
    return {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3)}


def test_averaged_params_finds_the_state_anywhere():
    params = _params()
    ema = param_ema(0.5).init(params)
    single = ema.ema
    nested = {
        "chain": optix.chain(optix.sgd(0.1), param_ema(0.5)).init(params),
        "named": optix.named_chain(sgd=optix.sgd(0.1), avg=param_ema(0.5)).init(params),
        "tuples": (optix.EmptyState(), ({"a": optix.sgd(0.1).init(params), "b": (ema,)},)),
        "root": ema,
    }
    for where, state in nested.items():
        got = averaged_params(state)
        for k in params:
            np.testing.assert_array_equal(got[k], single[k], err_msg=where)
    la = lookahead(optix.sgd(0.1), 3, 0.5)
    state = {"opt": la.init(params)}
    got = averaged_params(state)
    for k in params:
        np.testing.assert_array_equal(got[k], params[k])  # the slow weights start at the params


def test_averaged_params_errors_and_path_selection():
    params = _params()
    with pytest.raises(ValueError, match="no averaging state"):
        averaged_params(optix.adam(1e-3).init(params))
    tx = optix.chain(optix.sgd(0.1), param_ema(0.5), swa())
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"several averaging states .*: 1, 2; choose one"):
        averaged_params(state)
    assert isinstance(state[1], ParamEmaState) and isinstance(state[2], SwaState)
    np.testing.assert_array_equal(averaged_params(state, path="1")["w"], params["w"])
    with pytest.raises(ValueError, match="has not averaged any params yet"):
        averaged_params(state, path="2")
    with pytest.raises(ValueError, match=r"no averaging state at path '3'; the state has: 1 \("):
        averaged_params(state, path="3")
    with pytest.raises(TypeError, match="`path` must be a string"):
        averaged_params(state, path=1)
    named = optix.named_chain(sgd=optix.sgd(0.1), ema=param_ema(0.5), mean=swa())
    np.testing.assert_array_equal(averaged_params(named.init(params), path="ema")["b"], params["b"])
    # A lookahead around a chain that averages: the slow weights and the EMA, by path.
    la = lookahead(optix.chain(optix.sgd(0.1), param_ema(0.5, debias=True)), 2, 0.5)
    state = la.init(params)
    with pytest.raises(ValueError, match=r"<root>, inner_state/1; choose one"):
        averaged_params(state)
    np.testing.assert_array_equal(averaged_params(state, path="<root>")["w"], params["w"])
    with pytest.raises(ValueError, match="'inner_state/1' has not averaged"):
        averaged_params(state, path="inner_state/1")
    with pytest.raises(ValueError, match="the structure of"):
        averaged_params(param_ema(0.5).init(params), {"w": params["w"]})


@pytest.mark.parametrize("make", [lambda: param_ema(0.9), lambda: swa(2, 3)], ids=["ema", "swa"])
def test_contract(make):
    tx = optix.chain(optix.adam(1e-2), make())
    params = {"s": jnp.ones([]), "v": jnp.ones(3, jnp.bfloat16), "m": jnp.ones((2, 2))}
    grads = jax.tree.map(lambda x: 0.5 * x, params)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    signature = lambda t: (jax.tree.structure(t), [(x.shape, x.dtype) for x in jax.tree.leaves(t)])  # noqa: E731
    state = tx.init(params)
    assert signature(jax.eval_shape(tx.init, shapes)) == signature(state)

    def body(carry, _):
        p, s = carry
        u, s = tx.update(grads, s, p)
        return (optix.apply_updates(p, u), s), None

    (p, s), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=4))((params, state))
    assert signature(s) == signature(state)
    assert all(p[k].dtype == params[k].dtype for k in params)
    u, _ = tx.update(grads, state, params)
    assert all(u[k].dtype == grads[k].dtype for k in params)
    name = "param_ema" if isinstance(state[1], ParamEmaState) else "swa"
    with pytest.raises(ValueError, match=f"`{name}` needs the current parameters"):
        tx.update(grads, state)


def test_invalid_arguments():
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="`decay` must be in"):
            param_ema(bad)
    with pytest.raises(TypeError, match="`debias` must be a bool"):
        param_ema(0.9, debias=1)
    with pytest.raises(ValueError, match="`start_step` must be >= 0"):
        swa(-1)
    with pytest.raises(ValueError, match="`every_k` must be >= 1"):
        swa(0, 0)
    with pytest.raises(TypeError, match="`every_k` must be an integer"):
        swa(0, 2.0)
    with pytest.raises(TypeError, match="must be an integer"):
        swa(True)


def test_decay_is_a_settable_hyperparameter():
    params = {"w": jnp.zeros(2)}
    state = optix.chain(optix.sgd(1.0), param_ema(0.9)).init(params)
    assert float(optix.get_hyperparams(state)["decay"]) == pytest.approx(0.9)
    state = optix.set_hyperparams(state, decay=0.5)
    tx = optix.chain(optix.sgd(1.0), param_ema(0.9))
    _, state = tx.update({"w": -jnp.ones(2)}, state, params)
    np.testing.assert_allclose(averaged_params(state)["w"], [0.5, 0.5])


def test_complex_params_average_as_complex():
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(4) + 1j * rng.standard_normal(4)
    grads = [rng.standard_normal(4) + 1j * rng.standard_normal(4) for _ in range(20)]
    tx = optix.chain(optix.sgd(0.1), param_ema(0.8), swa(start_step=5, every_k=2))
    update = jax.jit(tx.update)
    params = jnp.asarray(p0, jnp.complex64)
    state = tx.init(params)
    trajectory = [p0]
    for g in grads:
        updates, state = update(jnp.asarray(g, jnp.complex64), state, params)
        params = optix.apply_updates(params, updates)
        trajectory.append(np.asarray(params, np.complex128))
    ema = trajectory[0]
    for p in trajectory[1:]:
        ema = 0.8 * ema + 0.2 * p
    mean = np.mean([trajectory[t] for t in range(5, 21, 2)], axis=0)
    for path, want in (("1", ema), ("2", mean)):
        got = averaged_params(state, path=path)
        assert got.dtype == jnp.complex64
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_leaves_without_an_average_come_back_as_the_params():
    params = {"w": jnp.ones(2), "frozen": jnp.full(3, 7.0)}
    state = param_ema(0.5).init({"w": params["w"], "frozen": None})  # as a masking wrapper does
    got = averaged_params(state, params)
    np.testing.assert_array_equal(got["frozen"], params["frozen"])
    np.testing.assert_array_equal(got["w"], params["w"])
    assert averaged_params(state)["frozen"] is None
