"""Teacher-forced step-by-step comparison of optix against another implementation.

Runs in float64 (use the ``x64`` fixture) for ``N_STEPS`` steps on a pytree with a scalar, a
vector and a matrix leaf. Both sides are teacher-forced: at every step they get the same params
and the same gradient (seeded, magnitudes from 1e-3 to 30, some exact zeros and one all-zero
step), each keeps its own state, and every step's updates must agree leaf by leaf.

Tolerance ``RTOL = 1e-10`` with ``atol = atol_rel * max|update|`` per leaf: both sides evaluate
the same float64 formulas in a different order, which costs a few ulps per operation; a
convention mismatch (eps inside or outside a root, a bias correction a step off) is 1e-8 or more.
``theirs`` is any object with optax's ``init``/``update`` protocol (optax, or a NumPy
transcription wrapped the same way); it runs under JAX's standard dtype promotion.

The other runners here are the same teacher-forced comparison for references that need another
loop: an eager NumPy side (``run_eager``), a loss passed as ``value=`` (``run_with_value``), other
leaf shapes (``run_on_shapes``), torch.optim (``run_against_torch``, torch's update read back as
``new - old``), and L-BFGS on a quadratic (``run_lbfgs_quadratic``). Which reference runs with
which runner, settings and tolerance is written once, in the registry ``tests/references.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import optix

N_STEPS = 120
ZERO_STEP = 11  # one step with an all-zero gradient
SHAPES = {"scalar": (), "vector": (6,), "matrix": (3, 4)}
RTOL = 1e-10
ATOL_REL = 1e-13  # times the largest |update| of the leaf at that step; see the module docstring


def random_tree(rng: np.random.Generator, scale: float) -> dict[str, np.ndarray]:
    return {k: scale * rng.standard_normal(shape) for k, shape in SHAPES.items()}


def gradient_stream(seed: int) -> list[dict[str, np.ndarray]]:
    """``N_STEPS`` float64 gradient trees, magnitudes spread over 1e-3 .. 30, with exact zeros."""
    rng = np.random.default_rng(seed)
    grads = []
    for t in range(N_STEPS):
        g = random_tree(rng, float(np.exp(rng.uniform(math.log(1e-3), math.log(30.0)))))
        g["vector"][rng.integers(0, 6)] = 0.0  # an exact zero somewhere, every step
        if t == ZERO_STEP:
            g = {k: np.zeros_like(v) for k, v in g.items()}
        grads.append(g)
    return grads


def params_stream(seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed + 1000)
    return [random_tree(rng, 2.0) for _ in range(N_STEPS)]


def assert_updates_close(
    ours, theirs, step: int, what: str, *, rtol: float = RTOL, atol_rel: float = ATOL_REL
) -> None:
    assert set(ours) == set(theirs)
    for key in ours:
        a = np.asarray(ours[key])
        b = np.asarray(theirs[key])
        assert a.dtype == np.float64, f"{what}: step {step} leaf {key} has dtype {a.dtype}"
        assert a.shape == b.shape
        atol = atol_rel * max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
        np.testing.assert_allclose(
            a, b, rtol=rtol, atol=atol, err_msg=f"{what}: step {step}, leaf {key!r}"
        )


def run_teacher_forced(
    ours: Any,
    theirs: Any,
    what: str,
    seed: int = 0,
    *,
    rtol: float = RTOL,
    atol_rel: float = ATOL_REL,
    steps: int = N_STEPS,
) -> None:
    """Run ``ours`` and ``theirs`` side by side, both jitted, and compare every step's updates."""
    grads = gradient_stream(seed)
    params = params_stream(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    p0 = as_jax(params[0])
    state_ours, state_theirs = ours.init(p0), theirs.init(p0)
    update_ours = jax.jit(ours.update)
    update_theirs = jax.jit(theirs.update)
    for t in range(steps):
        g, p = as_jax(grads[t]), as_jax(params[t])
        u_ours, state_ours = update_ours(g, state_ours, p)
        # optax is not written for strict dtype promotion; it gets JAX's default.
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, state_theirs = update_theirs(g, state_theirs, p)
        assert_updates_close(u_ours, u_theirs, t, what, rtol=rtol, atol_rel=atol_rel)


def _as_jax(tree: dict) -> dict:
    return {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}


def run_eager(
    ours: Any,
    theirs: Any,
    what: str,
    seed: int = 0,
    *,
    rtol: float = RTOL,
    atol_rel: float = ATOL_REL,
    steps: int = N_STEPS,
) -> None:
    """``run_teacher_forced``'s loop with an eager NumPy side (it cannot be jitted): ``theirs``
    gets the NumPy arrays of the streams."""
    grads, params = gradient_stream(seed), params_stream(seed)
    state_ours, state_theirs = ours.init(_as_jax(params[0])), theirs.init(params[0])
    update = jax.jit(ours.update)
    for t in range(steps):
        u_ours, state_ours = update(_as_jax(grads[t]), state_ours, _as_jax(params[t]))
        u_theirs, state_theirs = theirs.update(grads[t], state_theirs, params[t])
        assert_updates_close(u_ours, u_theirs, t, what, rtol=rtol, atol_rel=atol_rel)


def loss_stream(seed: int) -> list[float]:
    """Losses from 1e-2 to 50, for optimizers that read ``value=`` (Momo)."""
    rng = np.random.default_rng(seed + 500)
    return [float(np.exp(rng.uniform(np.log(1e-2), np.log(50.0)))) for _ in range(N_STEPS)]


def polyak_loss_stream(seed: int) -> list[float]:
    """Losses from 1e-3 to 30; every seventh below ``f_min = 0.5`` (a negative gap)."""
    rng = np.random.default_rng(seed + 2000)
    return [
        0.1 * rng.uniform() if t % 7 == 3 else float(np.exp(rng.uniform(math.log(1e-3), 3.4)))
        for t in range(N_STEPS)
    ]


def run_with_value(
    ours: Any,
    theirs: Any,
    what: str,
    seed: int = 0,
    *,
    values: Callable[[int], list[float]] = loss_stream,
    steps: int = N_STEPS,
) -> None:
    """``run_teacher_forced`` with the loss ``values(seed)[t]`` passed as ``value=`` to both."""
    grads, params, losses = gradient_stream(seed), params_stream(seed), values(seed)
    p0 = _as_jax(params[0])
    state_ours, state_theirs = ours.init(p0), theirs.init(p0)
    update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(steps):
        g, p, v = _as_jax(grads[t]), _as_jax(params[t]), jnp.float64(losses[t])
        u_ours, state_ours = update_ours(g, state_ours, p, value=v)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, state_theirs = update_theirs(g, state_theirs, p, value=v)
        assert_updates_close(u_ours, u_theirs, t, what)


def run_with_extra(
    ours: Any, theirs: Any, what: str, seed: int = 0, *, steps: int = N_STEPS, **static: Any
) -> None:
    """``run_teacher_forced`` with the same static keywords (``obj_fn=``) passed to both."""
    grads, params = gradient_stream(seed), params_stream(seed)
    p0 = _as_jax(params[0])
    state_ours, state_theirs = ours.init(p0), theirs.init(p0)
    update_ours = jax.jit(lambda g, s, p: ours.update(g, s, p, **static))
    update_theirs = jax.jit(lambda g, s, p: theirs.update(g, s, p, **static))
    for t in range(steps):
        g, p = _as_jax(grads[t]), _as_jax(params[t])
        u_ours, state_ours = update_ours(g, state_ours, p)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, state_theirs = update_theirs(g, state_theirs, p)
        assert_updates_close(u_ours, u_theirs, t, what)


def shaped_streams(shapes: dict, seed: int, steps: int = N_STEPS):
    """Gradients and params for ``shapes``, built like the streams above."""
    rng = np.random.default_rng(seed)
    grads, params = [], []
    for t in range(steps):
        scale = float(np.exp(rng.uniform(math.log(1e-3), math.log(30.0))))
        g = {k: scale * rng.standard_normal(s) for k, s in shapes.items()}
        for k, s in shapes.items():
            if len(s) >= 1:
                g[k].reshape(-1)[rng.integers(0, g[k].size)] = 0.0
        if t == ZERO_STEP:
            g = {k: np.zeros_like(v) for k, v in g.items()}
        grads.append(g)
        params.append({k: 2.0 * rng.standard_normal(s) for k, s in shapes.items()})
    return grads, params


def run_on_shapes(
    ours: Any,
    theirs: Any,
    what: str,
    seed: int = 0,
    *,
    shapes: dict,
    jit_theirs: bool = True,
    steps: int = N_STEPS,
    rtol: float = RTOL,
    atol_rel: float = ATOL_REL,
) -> None:
    """Teacher-forced comparison on arbitrary leaf shapes; ``theirs`` may be plain NumPy."""
    grads, params = shaped_streams(shapes, seed, steps)
    state_ours, state_theirs = ours.init(_as_jax(params[0])), theirs.init(params[0])
    update_ours = jax.jit(ours.update)
    update_theirs = jax.jit(theirs.update) if jit_theirs else theirs.update
    for t in range(steps):
        u_ours, state_ours = update_ours(_as_jax(grads[t]), state_ours, _as_jax(params[t]))
        with jax.numpy_dtype_promotion("standard"):
            g, p = (_as_jax(grads[t]), _as_jax(params[t])) if jit_theirs else (grads[t], params[t])
            u_theirs, state_theirs = update_theirs(g, state_theirs, p)
        assert_updates_close(u_ours, u_theirs, t, what, rtol=rtol, atol_rel=atol_rel)


# --- torch.optim ---------------------------------------------------------------------------------
# torch keeps its own params; optix is teacher-forced with the params torch had before each step,
# and torch's update is read back as ``new - old``, which loses up to one ulp of ``|param|`` to
# cancellation (what an absolute ``atol`` of 1e-12 covers).

TORCH_SHAPES = {"scalar": (), "vector": (5,), "matrix": (3, 4)}
# (end step, (low, high) log10 bounds of the gradient scale) for consecutive blocks of steps
_SCALE_BLOCKS = [(20, (-4.0, -2.0)), (60, (-1.0, 1.0)), (90, (-3.0, -2.0)), (N_STEPS, (-3.0, 1.0))]
TORCH_ZERO_STEP = 7


def _torch_gradient_scale(step: int, rng: np.random.Generator) -> float:
    """Small gradients first (so eps matters while the moments are small), then large ones, then
    small again (moments decaying from large values), then mixed; one step is all zeros."""
    if step == TORCH_ZERO_STEP:
        return 0.0
    low, high = next(bounds for end, bounds in _SCALE_BLOCKS if step < end)
    return 10.0 ** rng.uniform(low, high)


def torch_streams(seed: int = 0):
    """(initial params, gradients) of the torch.optim comparisons (``TORCH_SHAPES``): per-step
    random normal gradients, scaled per step by ``_torch_gradient_scale``."""
    rng = np.random.default_rng(seed)
    init = {k: rng.normal(size=s).astype(np.float64) for k, s in TORCH_SHAPES.items()}
    rng = np.random.default_rng(seed + 1)
    grads = []
    for step in range(N_STEPS):
        scale = _torch_gradient_scale(step, rng)
        grads.append({k: scale * rng.normal(size=s) for k, s in TORCH_SHAPES.items()})
    return init, grads


MATRIX_SHAPES = {"a": (3, 4), "b": (5, 2), "c": (4, 4)}


def matrix_streams(seed: int = 0):
    """(initial params, gradients) on matrices only (torch.optim.Muon accepts nothing else)."""
    rng = np.random.default_rng(seed)
    init = {k: rng.standard_normal(s) for k, s in MATRIX_SHAPES.items()}
    rng = np.random.default_rng(seed + 3)
    grads = []
    for t in range(N_STEPS):
        scale = 0.0 if t == 9 else float(np.exp(rng.uniform(math.log(1e-3), math.log(30.0))))
        grads.append({k: scale * rng.standard_normal(s) for k, s in MATRIX_SHAPES.items()})
    return init, grads


def reference_streams(seed: int):
    """(initial params, gradients) from ``params_stream`` and ``gradient_stream``."""
    return params_stream(seed)[0], gradient_stream(seed)


def run_against_torch(
    ours: Any,
    make_torch: Callable[[list], Any],
    what: str,
    *,
    streams: Callable[[], tuple] = torch_streams,
    rtol: float,
    atol: float = 0.0,
    atol_rel: float = 0.0,
    lr_lambda: Callable[[int], float] | None = None,
    forced_params: list | None = None,
    check: bool = True,
    steps: int = N_STEPS,
) -> float:
    """Teacher-forced comparison at every step against ``make_torch(params)``, a torch.optim
    optimizer; with ``lr_lambda`` a ``LambdaLR`` scheduler is stepped after each step; with
    ``forced_params`` torch's params are set to ``forced_params[t]`` before step ``t`` (else
    torch follows its own trajectory). Tolerance per leaf: ``atol + atol_rel * max|torch's|``.
    Returns the largest ``|ours - torch| / max|torch|`` over leaves and steps."""
    import torch

    init, grads = streams()
    tparams = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in init.items()}
    topt = make_torch(list(tparams.values()))
    tsched = None if lr_lambda is None else torch.optim.lr_scheduler.LambdaLR(topt, lr_lambda)
    state = ours.init({k: jnp.asarray(v) for k, v in init.items()})
    update = jax.jit(ours.update)
    worst = 0.0
    for step, grad in enumerate(grads[:steps]):
        if forced_params is not None:
            with torch.no_grad():
                for k, p in tparams.items():
                    p.copy_(torch.tensor(forced_params[step][k]))
        old = {k: p.detach().numpy().copy() for k, p in tparams.items()}
        for k, p in tparams.items():
            p.grad = torch.tensor(grad[k], dtype=torch.float64)
        topt.step()
        if tsched is not None:
            tsched.step()
        expected = {k: p.detach().numpy() - old[k] for k, p in tparams.items()}
        got, state = update(
            {k: jnp.asarray(g) for k, g in grad.items()},
            state,
            {k: jnp.asarray(v) for k, v in old.items()},
        )
        for k, e in expected.items():
            a = np.asarray(got[k])
            scale = max(float(np.abs(e).max(initial=0.0)), 1e-300)
            worst = max(worst, float(np.abs(a - e).max(initial=0.0)) / scale)
            if check:
                assert a.dtype == np.float64 and a.shape == e.shape, (k, a.dtype, a.shape)
                np.testing.assert_allclose(
                    a,
                    e,
                    rtol=rtol,
                    atol=atol + atol_rel * scale,
                    err_msg=f"{what}: leaf {k!r}, step {step}",
                )
    return worst


def run_lbfgs_quadratic(ours: Any, theirs: Any, what: str, seed: int = 0, *, steps: int = N_STEPS):
    """Teacher-forced steps on the reference pytree, gradients of a diagonal convex quadratic at
    random params (so s.y > 0 always and neither side skips a curvature pair)."""
    rng = np.random.default_rng(seed)
    shapes = {"scalar": (), "vector": (6,), "matrix": (3, 4)}
    curvature = {k: np.exp(rng.uniform(-2, 2, s)) for k, s in shapes.items()}
    p0 = {k: jnp.zeros(s) for k, s in shapes.items()}
    s_ours, s_theirs = ours.init(p0), theirs.init(p0)
    up_ours, up_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(steps):
        p = {k: jnp.asarray(rng.standard_normal(s) * 2.0) for k, s in shapes.items()}
        g = {k: curvature[k] * p[k] for k in shapes}
        u_ours, s_ours = up_ours(g, s_ours, p)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = up_theirs(g, s_theirs, p)
        for k in shapes:
            np.testing.assert_allclose(
                u_ours[k], u_theirs[k], rtol=1e-10, atol=1e-13, err_msg=f"{what}: step {t} {k}"
            )


# --- gradient noise (noisy_sgd): float32, against its documented construction --------------------


def _noise_tree(rng: np.random.Generator) -> object:
    """Nested, so flattening order matters; "b"'s vector and "v" share a shape, apart in order."""
    return {
        "w": rng.standard_normal((4, 3)).astype(np.float32),
        "b": [rng.standard_normal(5).astype(np.float32), np.float32(rng.standard_normal())],
        "a": rng.standard_normal((2, 2, 2)).astype(np.float32),
        "v": rng.standard_normal(5).astype(np.float32),
    }


def run_noise_transcription(
    ours: Any,
    theirs: Any,
    what: str,
    *,
    lr: float,
    eta: float,
    gamma: float,
    seed: int,
    steps: int = N_STEPS,
) -> None:
    """``update_t = -lr * (g_t + sqrt(eta / (1 + t)**gamma) * n_t)``, with ``n_t`` for leaf ``i``
    (in ``jax.tree`` flattening order) drawn as ``normal(noise_key(PRNGKey(seed), t, i))``; ``ours``
    is ``noisy_sgd(lr, eta=eta, gamma=gamma, seed=seed)`` and ``theirs`` is unused.

    Tolerance: optix forms the float32 sum ``g + std * n`` and scales it in float32; the float64
    transcription differs by a few float32 ulps of ``|g| + std * |n|``: ``rtol=1e-6`` and an
    ``atol`` of 1e-6 * lr for sums that cancel.
    """
    import optix

    del theirs
    rng = np.random.default_rng(seed)
    params = jax.tree.map(jnp.asarray, _noise_tree(rng))
    state = ours.init(params)
    update = jax.jit(ours.update)
    key = jax.random.PRNGKey(seed)
    shapes = [np.shape(g) for g in jax.tree.leaves(_noise_tree(rng))]

    @jax.jit
    def expected_noise(t):  # one compile; the draws are the documented ones
        return [
            jax.random.normal(optix.noise_key(key, t, i), s, jnp.float32)
            for i, s in enumerate(shapes)
        ]

    for t in range(steps):
        g_np = _noise_tree(rng)
        leaves_np, treedef = jax.tree.flatten(g_np)
        updates, state = update(jax.tree.map(jnp.asarray, g_np), state, params)
        got_leaves, got_def = jax.tree.flatten(updates)
        assert got_def == treedef
        std = math.sqrt(eta / (1 + t) ** gamma)
        noises = expected_noise(t)
        for i, (g, got, noise) in enumerate(zip(leaves_np, got_leaves, noises, strict=True)):
            want = -lr * (g.astype(np.float64) + std * np.asarray(noise, np.float64))
            assert got.dtype == jnp.float32 and got.shape == np.shape(g)
            np.testing.assert_allclose(
                np.asarray(got, np.float64),
                want,
                rtol=1e-6,
                atol=1e-6 * lr,
                err_msg=f"{what}: t={t} leaf {i}",
            )
    # The noise under jit is the noise drawn eagerly from the same key.
    eager = jax.random.normal(optix.noise_key(key, 5, 2), shapes[2], jnp.float32)
    np.testing.assert_array_equal(eager, expected_noise(jnp.int32(5))[2])


def _as_jax64(tree: dict) -> dict:
    return {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}


def max_rel_diff(ours, theirs, seed: int = 0) -> float:
    """The largest relative difference of the two transforms' updates over teacher-forced steps."""
    grads, params = gradient_stream(seed), params_stream(seed)
    s_ours, s_theirs = ours.init(_as_jax64(params[0])), theirs.init(_as_jax64(params[0]))
    worst = 0.0
    for g, p in zip(grads, params, strict=True):
        u_ours, s_ours = ours.update(_as_jax64(g), s_ours, _as_jax64(p))
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = theirs.update(_as_jax64(g), s_theirs, _as_jax64(p))
        for k in SHAPES:
            a, b = np.asarray(u_ours[k]), np.asarray(u_theirs[k])
            worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(b) + 1e-300), initial=0.0)))
    return worst


def train_scanned(tx, loss, params, steps, **extra):
    """``steps`` jitted steps of ``tx`` on ``loss`` in one ``lax.scan`` (the loss value passed as
    ``value=``); the final params and the loss of each step."""

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = tx.update(grads, state, params, value=value, **extra)
            return (optix.apply_updates(params, updates), state), value

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return params, losses

    return run(params)
