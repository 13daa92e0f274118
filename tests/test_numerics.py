"""Accepted inputs give finite results where the math allows it, and leaves of every array kind
(Python floats, NumPy arrays) work wherever JAX arrays do."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.cases import CASES
from tests.cases import IDS


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def _run(tx, grad, params, steps=3):
    """The updates of ``steps`` calls with the same gradient, each checked finite."""
    state = tx.init(params)
    out = []
    for _ in range(steps):
        updates, state = tx.update(grad, state, params)
        out.append(updates)
    return out


# ---- RAdam's threshold -----------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 1.0, 2.0, 3.9])
def test_radam_refuses_a_threshold_below_four(threshold):
    with pytest.raises(ValueError, match="`threshold` must be >= 4"):
        optix.radam(1e-2, threshold=threshold)
    with pytest.raises(ValueError, match="`threshold` must be >= 4"):
        optix.scale_by_radam(threshold=threshold)


def test_radam_set_hyperparams_refuses_a_threshold_below_four():
    state = optix.radam(1e-2).init({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="`threshold` must be >= 4"):
        optix.set_hyperparams(state, threshold=2.0)


def test_radam_traced_threshold_below_four_stays_finite():
    """A threshold only known inside jit cannot be refused: below 4 it acts as 4."""
    params = {"w": jnp.ones(3)}

    @jax.jit
    def run(threshold):
        tx = optix.radam(1e-2, threshold=threshold)
        state = tx.init(params)
        outs = []
        for _ in range(8):  # rho_t passes through (2, 4) in the first steps
            u, state = tx.update({"w": jnp.ones(3)}, state, params)
            outs.append(u["w"])
        return jnp.stack(outs)

    low, four = run(jnp.float32(0.0)), run(jnp.float32(4.0))
    assert _finite(low)
    np.testing.assert_array_equal(low, four)


def test_radam_threshold_of_four_is_accepted_and_finite():
    outs = _run(optix.radam(1e-2, threshold=4.0), {"w": jnp.ones(3)}, {"w": jnp.ones(3)}, 10)
    assert _finite(outs)


# ---- Adafactor's decay offset ----------------------------------------------------------------


@pytest.mark.parametrize("offset", [1.0, 3.0, 2.5])
def test_adafactor_decay_offset_gives_finite_first_steps(offset):
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    grad = jax.tree.map(lambda p: 0.5 * p, params)
    tx = optix.adafactor(1e-2, decay_offset=offset, min_dim_size_to_factor=2)
    assert _finite(_run(tx, grad, params, 5))


def test_adafactor_decay_offset_restarts_the_schedule_at_the_offset():
    """Before the offset the schedule sits at its first step (beta = 0): each step's statistic is
    the step's own |g|^2, so a constant gradient gives the same update every step."""
    params = {"w": jnp.ones(3)}
    tx = optix.scale_by_factored_rms(decay_offset=2.0)
    outs = _run(tx, {"w": jnp.array([1.0, -2.0, 4.0])}, params, 3)
    for u in outs:
        np.testing.assert_allclose(u["w"], [1.0, -1.0, 1.0], rtol=1e-6)


# ---- eps = 0 ---------------------------------------------------------------------------------


def test_adam_eps_zero_with_a_zero_gradient_is_nan_as_in_torch():
    """optix keeps torch's convention (documented): with ``eps=0`` an element whose gradients
    have all been exactly 0 divides 0 by 0. torch.optim.Adam gives the same NaN."""
    torch = pytest.importorskip("torch")
    params = {"w": jnp.ones(2)}
    (u,) = _run(optix.adam(1e-2, eps=0.0), {"w": jnp.array([0.0, 1.0])}, params, 1)
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.Adam([p], lr=1e-2, eps=0.0)
    p.grad = torch.tensor([0.0, 1.0])
    opt.step()
    assert np.isnan(p.detach().numpy()[0]) and np.isnan(u["w"][0])
    assert np.isfinite(u["w"][1])


# ---- huge gradients and params ---------------------------------------------------------------

_BIG_GRAD = 3e19  # |g|^2 overflows float32; (1 - b2) |g|^2 does not


@pytest.mark.parametrize(
    "make",
    [
        lambda: optix.yogi(1e-2),
        lambda: optix.scale_by_yogi(),
        lambda: optix.adadelta(1.0),
    ],
    ids=["yogi", "scale_by_yogi", "adadelta"],
)
def test_huge_gradients_give_finite_nonzero_updates(make):
    params = {"w": jnp.ones((4, 3))}
    outs = _run(make(), {"w": jnp.full((4, 3), _BIG_GRAD)}, params, 3)
    assert _finite(outs)
    assert all(bool(jnp.all(u["w"] != 0)) for u in outs)


def test_yogi_matches_its_small_gradient_rule_at_huge_scale():
    """Yogi's update is invariant to scaling the gradient once the initial accumulator (1e-6) and
    eps (0 here) are negligible: the huge gradient gives the update of the gradient scaled down."""
    params = {"w": jnp.ones(3)}
    g = jnp.array([1.0, -2.0, 3.0])
    small = _run(optix.scale_by_yogi(eps=0.0), {"w": g * 1e3}, params, 3)
    huge = _run(optix.scale_by_yogi(eps=0.0), {"w": g * 1e19}, params, 3)
    for a, b in zip(small, huge, strict=True):
        np.testing.assert_allclose(a["w"], b["w"], rtol=1e-5)


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_adafactor_huge_factored_gradients_give_finite_updates(momentum):
    """|g|^2 fits, but its row sums and the quotient of two such statistics did not."""
    params = {"w": jnp.ones((4, 3))}
    tx = optix.adafactor(1e-2, momentum=momentum, min_dim_size_to_factor=2)
    outs = _run(tx, {"w": jnp.full((4, 3), 1.5e19)}, params, 3)
    assert _finite(outs)
    small = _run(tx, {"w": jnp.full((4, 3), 1.5)}, params, 3)
    for a, b in zip(small, outs, strict=True):  # relative steps: the gradient's scale drops out
        np.testing.assert_allclose(a["w"], b["w"], rtol=1e-5)


_BIG_PARAM = 3e19  # ||theta||^2 overflows float32; ||theta|| does not


@pytest.mark.parametrize(
    "make",
    [
        lambda: optix.lamb(1e-2),
        lambda: optix.lars(1e-2),
        lambda: optix.fromage(1e-2),
        lambda: optix.adafactor(1e-2, min_dim_size_to_factor=2),
        lambda: optix.scale_by_trust_ratio(),
        lambda: optix.scale_by_param_block_rms(),
    ],
    ids=["lamb", "lars", "fromage", "adafactor", "scale_by_trust_ratio", "param_block_rms"],
)
def test_huge_params_give_finite_updates(make):
    params = {"w": jnp.full((4, 3), _BIG_PARAM)}
    outs = _run(make(), {"w": jnp.ones((4, 3))}, params, 2)
    assert _finite(outs)


def test_leaf_norm_by_scaling_matches_the_plain_norm_and_its_gradient():
    from optix.transforms._trust_ratio import leaf_norm

    x = jnp.array([[3.0, -4.0], [0.0, 12.0]])
    np.testing.assert_allclose(leaf_norm(x), 13.0, rtol=1e-6)
    np.testing.assert_allclose(leaf_norm(x * 1e20), 13e20, rtol=1e-6)
    np.testing.assert_allclose(leaf_norm(jnp.array([3j, 4.0 + 0j])), 5.0, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(leaf_norm)(x), x / 13.0, rtol=1e-6)
    assert float(leaf_norm(jnp.zeros(3))) == 0.0
    np.testing.assert_array_equal(jax.grad(leaf_norm)(jnp.zeros(3)), jnp.zeros(3))
    assert np.isinf(leaf_norm(jnp.array([1.0, jnp.inf])))
    assert np.isnan(leaf_norm(jnp.array([1.0, jnp.nan])))
    assert float(leaf_norm(jnp.zeros((0,)))) == 0.0


# ---- Python float and NumPy leaves -----------------------------------------------------------


def _loss(params):
    return sum(jnp.sum(jnp.asarray(p) ** 2) for p in jax.tree.leaves(params))


def _two_jitted_steps(case, a):
    params = {"a": a, "w": jnp.ones((3, 2))}
    tx = case.make()
    state = tx.init(params)

    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(_loss)(p), s, p)
        return optix.apply_updates(p, u), s

    p = params
    for _ in range(2):
        p, state = step(p, state)
    return p


@pytest.mark.parametrize("leaf", ["python_float", "numpy_float64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_python_float_and_numpy_leaves_work_like_jax_arrays(case, leaf):
    a = 1.5 if leaf == "python_float" else np.array([1.0, -2.0, 0.5])
    p = _two_jitted_steps(case, a)
    assert _finite(p)
    assert float(jnp.sum(jnp.abs(jnp.asarray(p["a"]) - jnp.asarray(a)))) > 0
