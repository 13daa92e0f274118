"""The elementwise zoo against its references: AdaBelief, Yogi, ADOPT, AdEMAMix, Adan, Lion,
signSGD, Signum and Rprop.

Every comparison is teacher-forced for ``tests.reference.N_STEPS`` (120) float64 steps on the
scalar/vector/matrix pytree of ``tests/reference.py``, with its tolerance (``rtol=1e-10``,
``atol = 1e-13 * max|update|``; the module docstring there says why): optax 0.2.8 (and
optax.contrib) where it has the optimizer, torch.optim.Rprop for Rprop, and for Adan, where optax
departs from the paper, a transcription of the paper's Algorithm 1 written below. No tolerance is
loosened. Where optix deliberately differs from a reference, a test shows the difference.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
import torch

import optix
from tests.reference import (
    SHAPES,
    assert_updates_close,
    gradient_stream,
    params_stream,
    run_teacher_forced,
)


def _decay_mask(params):
    return {k: v.ndim >= 1 for k, v in params.items()}


def _as_jax(tree):
    return {k: jnp.asarray(v) for k, v in tree.items()}


# --- Paper transcriptions and schedules, written from the papers (not from either library) -----


def adan_paper(lr: float, b1: float, b2: float, b3: float, eps: float, weight_decay: float):
    """Adan, Xie et al. 2022 (arXiv:2208.06677v4), Algorithm 1, in the decay convention of the
    authors' code (paper's beta_i = 1 - b_i), with the bias corrections and ``g_0 := g_1`` (so the
    first difference is 0) of the authors' code, and the decay in its ``no_prox`` form:

      line 3:  m_k = b1 m_{k-1} + (1 - b1) g_k
      line 4:  v_k = b2 v_{k-1} + (1 - b2) (g_k - g_{k-1})
      line 5:  n_k = b3 n_{k-1} + (1 - b3) [g_k + b2 (g_k - g_{k-1})]^2   (paper: 1 - beta_2)
      line 6:  eta_k = lr / (sqrt(n_k / (1 - b3^k)) + eps)
      line 7:  theta_{k+1} = theta_k (1 - lr lambda)
                             - eta_k (m_k / (1 - b1^k) + b2 v_k / (1 - b2^k))   (paper: 1 - beta_2)
    """

    def init(params):
        zeros = {k: jnp.zeros_like(v) for k, v in params.items()}
        return {"t": jnp.zeros([], jnp.int32), "m": zeros, "v": zeros, "n": zeros, "g": zeros}

    def update(grads, state, params):
        t = state["t"] + 1
        tf = t.astype(jnp.float64)
        new = {"t": t, "m": {}, "v": {}, "n": {}, "g": {}}
        out = {}
        for k, g in grads.items():
            d = jnp.where(t == 1, 0.0, g - state["g"][k])
            m = b1 * state["m"][k] + (1 - b1) * g
            v = b2 * state["v"][k] + (1 - b2) * d
            n = b3 * state["n"][k] + (1 - b3) * (g + b2 * d) ** 2
            eta = lr / (jnp.sqrt(n / (1 - b3**tf)) + eps)
            out[k] = -lr * weight_decay * params[k] - eta * (
                m / (1 - b1**tf) + b2 * v / (1 - b2**tf)
            )
            new["m"][k], new["v"][k], new["n"][k], new["g"][k] = m, v, n, g
        return out, new

    return optax.GradientTransformation(init, update)


def paper_alpha_schedule(alpha: float, warmup: int) -> Callable:
    """AdEMAMix (arXiv:2409.03137) alpha scheduler: ``min(t alpha / T_alpha, alpha)``."""
    return lambda t: jnp.minimum(jnp.asarray(t, jnp.float64) * alpha / warmup, alpha)


def paper_b3_schedule(b_start: float, b_end: float, warmup: int) -> Callable:
    """AdEMAMix beta_3 scheduler: ``exp(ln b_start ln b_end / ((1 - t/T) ln b_end + (t/T) ln
    b_start))`` for ``t < T``, then ``b_end``."""

    def schedule(t):
        t = jnp.asarray(t, jnp.float64)
        frac = t / warmup
        ls, le = np.log(b_start), np.log(b_end)
        warm = jnp.exp(ls * le / ((1 - frac) * le + frac * ls))
        return jnp.where(t < warmup, warm, b_end)

    return schedule


# --- Teacher-forced comparisons: name -> (optix factory, reference factory) --------------------

REFERENCES: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
    "adabelief": (lambda: optix.adabelief(1e-2), lambda: optax.adabelief(1e-2)),
    "adabelief_betas_eps": (
        lambda: optix.adabelief(3e-3, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-10),
        lambda: optax.adabelief(3e-3, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-10),
    ),
    "adabelief_nesterov": (
        lambda: optix.adabelief(1e-2, nesterov=True),
        lambda: optax.adabelief(1e-2, nesterov=True),
    ),
    "yogi": (lambda: optix.yogi(1e-2), lambda: optax.yogi(1e-2)),
    "yogi_options": (
        lambda: optix.yogi(
            3e-3, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, initial_accumulator_value=0.1
        ),
        lambda: optax.chain(
            optax.scale_by_yogi(
                b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, initial_accumulator_value=0.1
            ),
            optax.scale(-3e-3),
        ),
    ),
    "adopt": (lambda: optix.adopt(1e-3), lambda: optax.contrib.adopt(1e-3)),
    "adopt_nesterov_betas": (
        lambda: optix.adopt(1e-3, b1=0.8, b2=0.99, eps=1e-4, nesterov=True),
        lambda: optax.contrib.adopt(1e-3, b1=0.8, b2=0.99, eps=1e-4, nesterov=True),
    ),
    "adopt_no_clipping": (
        lambda: optix.adopt(1e-3, eps=1e-3, clip_value=None),
        lambda: optax.contrib.adopt(1e-3, eps=1e-3, use_clipping=False),
    ),
    "adopt_weight_decay": (
        lambda: optix.adopt(1e-3, weight_decay=0.1, mask=_decay_mask),
        lambda: optax.chain(
            optax.contrib.scale_by_adopt(),
            optax.add_decayed_weights(0.1, _decay_mask),
            optax.scale(-1e-3),
        ),
    ),
    "ademamix": (
        lambda: optix.ademamix(1e-3, weight_decay=0.1, mask=_decay_mask),
        lambda: optax.contrib.ademamix(1e-3, weight_decay=0.1, mask=_decay_mask),
    ),
    "ademamix_betas_eps_root": (
        lambda: optix.ademamix(2e-3, b1=0.8, b2=0.99, b3=0.999, alpha=8.0, eps_root=1e-8),
        lambda: optax.contrib.ademamix(2e-3, b1=0.8, b2=0.99, b3=0.999, alpha=8.0, eps_root=1e-8),
    ),
    # the paper's warmups (written above from the paper) against optix's warmup options
    "ademamix_warmups": (
        lambda: optix.ademamix(1e-3, b3=0.999, alpha_warmup_steps=60, b3_warmup_steps=80),
        lambda: optax.contrib.ademamix(
            1e-3,
            b3=paper_b3_schedule(0.9, 0.999, 80),
            alpha=paper_alpha_schedule(5.0, 60),
        ),
    ),
    "adan": (
        lambda: optix.adan(1e-2, weight_decay=0.02, mask=_decay_mask),
        lambda: _masked_paper_adan(),
    ),
    "adan_betas": (
        lambda: optix.adan(3e-3, b1=0.9, b2=0.8, b3=0.95, eps=1e-6, weight_decay=0.05),
        lambda: adan_paper(3e-3, 0.9, 0.8, 0.95, 1e-6, 0.05),
    ),
    # optax's difference weight (1 - b2) equals the paper's (b2) only at b2 = 0.5: there optax
    # checks everything else (bias corrections, eps and eps_root placement, d_1 = 0, the decay)
    "adan_b2_half_vs_optax": (
        lambda: optix.adan(1e-2, b2=0.5, eps_root=1e-8, weight_decay=0.02, mask=_decay_mask),
        lambda: optax.adan(1e-2, b2=0.5, eps_root=1e-8, weight_decay=0.02, mask=_decay_mask),
    ),
    "lion": (
        lambda: optix.lion(1e-3, weight_decay=0.1, mask=_decay_mask),
        lambda: optax.lion(1e-3, weight_decay=0.1, mask=_decay_mask),
    ),
    "lion_betas": (
        lambda: optix.lion(3e-4, b1=0.95, b2=0.98),
        lambda: optax.lion(3e-4, b1=0.95, b2=0.98),
    ),
    "sign_sgd": (lambda: optix.sign_sgd(0.1), lambda: optax.sign_sgd(0.1)),
    "signum": (lambda: optix.signum(0.05, beta=0.8), lambda: optax.signum(0.05, beta=0.8)),
}


def _masked_paper_adan():
    """``adan_paper`` with the decay restricted to ``_decay_mask``: the decay-free transcription
    plus the masked decay term ``-lr * lambda * theta``, which is how Algorithm 1's line 7
    separates."""
    lr, wd = 1e-2, 0.02
    return optax.chain(
        adan_paper(lr, 0.98, 0.92, 0.99, 1e-8, 0.0),
        _AddMaskedDecay(lr * wd),
    )


class _AddMaskedDecay:
    """Add ``-c * theta`` to the masked leaves (a plain transcription, not optax's transform)."""

    def __init__(self, c: float):
        self.c = c

    def init(self, params):
        return ()

    def update(self, updates, state, params):
        mask = _decay_mask(params)
        out = {k: u - self.c * params[k] if mask[k] else u for k, u in updates.items()}
        return out, state


@pytest.mark.parametrize("name", list(REFERENCES))
def test_matches_reference_step_by_step(name, x64):
    make_ours, make_theirs = REFERENCES[name]
    run_teacher_forced(make_ours(), make_theirs(), name)


def test_adan_differs_from_optax_at_default_b2(x64):
    """optax 0.2.8 weights the gradient difference by ``1 - b2`` (0.08), the paper and the
    authors' code by ``b2`` (0.92): from the second step on, the updates differ by percents."""
    ours, theirs = optix.adan(1e-2), optax.adan(1e-2, eps_root=0.0)
    grads, params = gradient_stream(0), params_stream(0)
    s_ours, s_theirs = ours.init(_as_jax(params[0])), theirs.init(_as_jax(params[0]))
    update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    worst = []
    for t in range(10):
        g, p = _as_jax(grads[t]), _as_jax(params[t])
        u_ours, s_ours = update_ours(g, s_ours, p)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = update_theirs(g, s_theirs, p)
        rel = max(
            float(jnp.max(jnp.abs(u_ours[k] - u_theirs[k])) / jnp.max(jnp.abs(u_theirs[k])))
            for k in SHAPES
        )
        worst.append(rel)
    assert worst[0] < 1e-12  # no difference yet: d_1 = 0
    assert max(worst[1:]) > 1e-2


# --- Rprop against torch.optim.Rprop ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.01},
        {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)},
        {"lr": 80.0},  # above max_step_size: torch clamps at the first step, as optix does
    ],
    ids=["default", "options", "lr_above_max"],
)
def test_rprop_matches_torch(kwargs, x64):
    etas = kwargs.get("etas", (0.5, 1.2))
    sizes = kwargs.get("step_sizes", (1e-6, 50.0))
    tx = optix.rprop(kwargs["lr"], etas[0], etas[1], sizes[0], sizes[1])
    init = params_stream(3)[0]
    tparams = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in init.items()}
    topt = torch.optim.Rprop(list(tparams.values()), **kwargs)
    state = tx.init(_as_jax(init))
    update = jax.jit(tx.update)
    for step, grad in enumerate(gradient_stream(3)):
        old = {k: p.detach().numpy().copy() for k, p in tparams.items()}
        for k, p in tparams.items():
            p.grad = torch.tensor(grad[k], dtype=torch.float64)
        topt.step()
        # torch's update is read back as new - old: up to one ulp of |param| is lost (atol)
        expected = {k: p.detach().numpy() - old[k] for k, p in tparams.items()}
        updates, state = update(_as_jax(grad), state)
        for k in SHAPES:
            got = np.asarray(updates[k])
            assert got.dtype == np.float64
            np.testing.assert_allclose(
                got, expected[k], rtol=1e-10, atol=1e-12, err_msg=f"leaf {k}, step {step}"
            )


@pytest.mark.parametrize(
    "kwargs", [{}, {"eta_minus": 0.3, "eta_plus": 1.5, "min_step_size": 1e-3, "max_step_size": 0.5}]
)
def test_optax_rprop_lags_one_step_behind(kwargs, x64):
    """optax 0.2.8's ``scale_by_rprop`` returns the *previous* step's update (zeroed where the
    sign flips now; all zeros at the first step): google-deepmind/optax PR #1725. optix follows
    torch.optim.Rprop (checked above); with that lag put back, optax agrees with optix."""
    ours, theirs = optix.rprop(0.05, **kwargs), optax.rprop(0.05, **kwargs)
    grads = gradient_stream(5)
    s_ours, s_theirs = ours.init(_as_jax(grads[0])), theirs.init(_as_jax(grads[0]))
    update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    kept = {k: np.zeros(s) for k, s in SHAPES.items()}  # previous gradient, zeroed at flips
    previous = None
    for t, g in enumerate(grads):
        u_ours, s_ours = update_ours(_as_jax(g), s_ours)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = update_theirs(_as_jax(g), s_theirs)
        flip = {k: g[k] * kept[k] < 0 for k in SHAPES}
        kept = {k: np.where(flip[k], 0.0, g[k]) for k in SHAPES}
        want = (
            {k: np.zeros(s) for k, s in SHAPES.items()}
            if previous is None
            else {k: np.where(flip[k], 0.0, previous[k]) for k in SHAPES}
        )
        assert_updates_close(u_theirs, want, t, "optax rprop = optix rprop one step late")
        previous = {k: np.asarray(v) for k, v in u_ours.items()}


def test_rprop_learning_rate_rescales_the_adapted_step_sizes(x64):
    """Step sizes are kept relative to ``learning_rate``: setting it mid-run scales every step
    size (torch and optax read it only once, so there this is a deliberate extension)."""
    tx = optix.rprop(0.1)
    update = jax.jit(tx.update)
    grads = gradient_stream(4)
    state = tx.init({k: jnp.zeros(s) for k, s in SHAPES.items()})
    for t in range(6):
        _, state = update(_as_jax(grads[t]), state)
    g = _as_jax(grads[6])
    kept, _ = update(g, state)
    lowered, _ = update(g, optix.set_hyperparams(state, learning_rate=0.01))
    for k in SHAPES:
        np.testing.assert_allclose(lowered[k], kept[k] / 10, rtol=1e-13, atol=0)


def test_rprop_step_sizes_stay_within_bounds():
    tx = optix.rprop(0.1, min_step_size=1e-3, max_step_size=0.4)
    update = jax.jit(tx.update)
    p = {"w": jnp.zeros(2)}
    state = tx.init(p)
    for _ in range(40):  # same sign: grows by 1.2 until the max
        u, state = update({"w": jnp.array([1.0, -1.0])}, state)
    np.testing.assert_allclose(u["w"], [-0.4, 0.4], rtol=1e-6)
    sizes = []
    for t in range(80):  # alternating signs: halves every other step until the min
        u, state = update({"w": jnp.array([1.0, -1.0]) * (-1.0) ** t}, state)
        sizes.append(float(jnp.max(jnp.abs(u["w"]))))
    nonzero = [s for s in sizes if s > 0]
    assert sizes.count(0.0) >= 30  # each flip skips that step
    np.testing.assert_allclose(nonzero[-1], 1e-3, rtol=1e-6)
    assert min(nonzero) >= 1e-3 * (1 - 1e-6)


# --- ADOPT specifics ----------------------------------------------------------------------------


def test_adopt_first_step_only_initialises_the_second_moment(x64):
    tx = optix.scale_by_adopt()
    g = {"w": jnp.array([3.0, -0.5, 0.0])}
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(u["w"], 0.0)
    np.testing.assert_array_equal(state.mu["w"], 0.0)
    np.testing.assert_array_equal(state.nu["w"], g["w"] ** 2)
    # second step: g / max(|g_0|, eps), clipped at 1^(1/4) = 1, times (1 - b1)
    u, _ = tx.update({"w": jnp.array([1.5, -2.0, 1.0])}, state)
    np.testing.assert_allclose(u["w"], 0.1 * np.array([0.5, -1.0, 1.0]), rtol=1e-15)


def test_adopt_complex_needs_clipping_off():
    params = {"w": jnp.ones(3, jnp.complex64)}
    with pytest.raises(TypeError, match="complex"):
        optix.adopt(1e-3).init(params)
    tx = optix.adopt(1e-3, clip_value=None)
    grads = {"w": jnp.array([1 + 1j, 2j, -1.0], jnp.complex64)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(3):
        u, state = update(grads, state)
    assert u["w"].dtype == jnp.complex64 and bool(jnp.all(jnp.isfinite(u["w"])))
    assert state[0].nu["w"].dtype == jnp.float32  # chain state: (scale_by_adopt, scale_lr)


def test_rprop_rejects_complex():
    with pytest.raises(TypeError, match="complex"):
        optix.rprop(0.1).init({"w": jnp.ones(3, jnp.complex64)})


def test_sign_methods_use_the_complex_phase():
    """``sign(z) = z / |z|`` for complex leaves (the update keeps the gradient's phase)."""
    z = jnp.array([3 + 4j, -2j], jnp.complex64)
    for tx in (optix.sign_sgd(1.0), optix.signum(1.0, beta=0.0), optix.lion(1.0, b1=0.0)):
        params = {"w": jnp.zeros(2, jnp.complex64)}
        u, _ = tx.update({"w": z}, tx.init(params), params)
        np.testing.assert_allclose(u["w"], -np.asarray(z) / np.abs(np.asarray(z)), rtol=1e-6)


# --- dtypes, validation, hyperparameters --------------------------------------------------------

MOMENT_TRANSFORMS = {
    "adabelief": (optix.scale_by_adabelief, ("mu", "nu")),
    "yogi": (optix.scale_by_yogi, ("mu", "nu")),
    "adopt": (optix.scale_by_adopt, ("mu", "nu")),
    "ademamix": (optix.scale_by_ademamix, ("m1", "m2", "nu")),
    "adan": (optix.scale_by_adan, ("mu", "delta", "nu")),
    "lion": (optix.scale_by_lion, ("mu",)),
    "signum": (optix.scale_by_signum, ("mu",)),
}


@pytest.mark.parametrize("name", list(MOMENT_TRANSFORMS))
def test_moment_dtypes_are_chosen_updates_keep_the_gradient_dtype(name):
    factory, fields = MOMENT_TRANSFORMS[name]
    kwargs = {"mu_dtype": jnp.bfloat16}
    if "nu" in fields:
        kwargs["nu_dtype"] = jnp.bfloat16
    tx = factory(**kwargs)
    params = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.ones(3, jnp.float32)}
    state = tx.init(params)
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    updates, state = jax.jit(tx.update)(grads, state)
    for field in fields:
        assert {x.dtype for x in jax.tree.leaves(getattr(state, field))} == {
            jnp.dtype(jnp.bfloat16)
        }, field
    assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize(
    "make",
    [
        lambda: optix.adan(1e-3, b3=1.0),
        lambda: optix.ademamix(1e-3, b3=-0.1),
        lambda: optix.ademamix(1e-3, alpha=-1.0),
        lambda: optix.ademamix(1e-3, alpha_warmup_steps=0),
        lambda: optix.ademamix(1e-3, b3=optix.schedules.constant(0.99), b3_warmup_steps=10),
        lambda: optix.adopt(1e-3, b2=1.0),
        lambda: optix.adopt(1e-3, clip_value=-1.0),
        lambda: optix.lion(1e-3, b1=1.5),
        lambda: optix.signum(1e-3, beta=1.0),
        lambda: optix.yogi(1e-3, initial_accumulator_value=-1.0),
        lambda: optix.adabelief(1e-3, eps_root=-1.0),
        lambda: optix.rprop(0.1, eta_minus=1.0),
        lambda: optix.rprop(0.1, eta_plus=1.0),
        lambda: optix.rprop(0.1, min_step_size=1.0, max_step_size=0.5),
        lambda: optix.rprop(-0.1),
    ],
)
def test_invalid_hyperparameters_are_rejected_at_construction(make):
    with pytest.raises((ValueError, TypeError)):
        make()


@pytest.mark.parametrize(
    "make, name, bad",
    [
        (lambda: optix.adan(1e-3), "b3", 1.0),
        (lambda: optix.ademamix(1e-3), "b3", 1.5),
        (lambda: optix.ademamix(1e-3), "alpha", -2.0),
        (lambda: optix.signum(1e-3), "beta", 1.0),
        (lambda: optix.rprop(0.1), "eta_plus", 0.9),
        (lambda: optix.rprop(0.1), "eta_minus", 1.1),
        (lambda: optix.rprop(0.1), "max_step_size", 0.0),
    ],
)
def test_set_hyperparams_range_checks_new_names(make, name, bad):
    state = make().init({"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match=name):
        optix.set_hyperparams(state, {name: bad})


def test_hyperparameters_live_in_state():
    params = {"w": jnp.zeros(3)}
    expected = {
        optix.adabelief: {"learning_rate", "b1", "b2", "eps", "eps_root"},
        optix.yogi: {"learning_rate", "b1", "b2", "eps", "eps_root"},
        optix.adopt: {"learning_rate", "b1", "b2", "eps", "clip_value"},
        optix.ademamix: {"learning_rate", "b1", "b2", "b3", "alpha", "eps", "eps_root"},
        optix.adan: {"learning_rate", "b1", "b2", "b3", "eps", "eps_root"},
        optix.lion: {"learning_rate", "b1", "b2", "weight_decay"},
        optix.signum: {"learning_rate", "beta"},
        optix.rprop: {
            "learning_rate",
            "eta_minus",
            "eta_plus",
            "min_step_size",
            "max_step_size",
        },
    }
    for factory, names in expected.items():
        found = set(optix.get_hyperparams(factory(1e-2).init(params)))
        assert names <= found, (factory.__name__, found)


def test_ademamix_warmups_reach_their_targets():
    tx = optix.ademamix(1e-3, b3=0.999, alpha=4.0, alpha_warmup_steps=10, b3_warmup_steps=10)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    seen = []
    for _ in range(12):
        _, state = update({"w": jnp.ones(2)}, state, params)
        hp = optix.get_hyperparams(state)
        seen.append((float(hp["alpha"]), float(hp["b3"])))
    # the values used by the update at counts 0 .. 11
    np.testing.assert_allclose([a for a, _ in seen], [min(t / 10, 1) * 4 for t in range(12)])
    assert seen[0][1] == pytest.approx(0.9) and seen[-1][1] == pytest.approx(0.999)
    assert all(b1 <= b2 for (_, b1), (_, b2) in zip(seen, seen[1:], strict=False))


@pytest.mark.parametrize("bad", [0, -3, 1.5])
def test_ademamix_warmup_errors_name_the_callers_argument(bad):
    from optix.transforms._ademamix import alpha_warmup, b3_warmup

    with pytest.raises((ValueError, TypeError), match="`alpha_warmup_steps` must be"):
        alpha_warmup(5.0, bad, steps_name="alpha_warmup_steps")
    with pytest.raises((ValueError, TypeError), match="`b3_warmup_steps` must be"):
        b3_warmup(0.9999, bad, 0.9, steps_name="b3_warmup_steps")
