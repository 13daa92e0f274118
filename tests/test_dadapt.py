"""D-Adapt AdamW and Prodigy (D-Adaptation's successor): the zero first gradient, the decay mask,
low-precision params, complex params and argument checks.

The step-by-step comparisons with optax.contrib and with NumPy transcriptions of the papers'
algorithms are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from tests.reference import SHAPES

MASK = {"scalar": False, "vector": True, "matrix": True}


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_zero_first_gradient_keeps_d_where_optax_turns_nan(name):
    params = {"w": jnp.ones(3)}
    zero, one = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
    ours = getattr(optix, name)()
    theirs = getattr(optax.contrib, name)()
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for g in (zero, one, one):
        u_ours, s_ours = update_ours(g, s_ours, params)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = update_theirs(g, s_theirs, params)
    assert bool(jnp.all(jnp.isfinite(u_ours["w"]))) and bool(jnp.isfinite(s_ours.d))
    assert float(s_ours.d) > 0
    assert not bool(jnp.all(jnp.isfinite(u_theirs["w"])))


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_weight_decay_mask(name):
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in SHAPES.items()}
    grads = jax.tree.map(lambda p: 0.1 * p + 1.0, params)
    make = getattr(optix, name)
    runs = {}
    for label, kwargs in {
        "masked": {"weight_decay": 0.5, "mask": MASK},
        "fn": {"weight_decay": 0.5, "mask": lambda p: {k: v.ndim > 0 for k, v in p.items()}},
        "all": {"weight_decay": 0.5},
        "none": {"weight_decay": 0.0},
    }.items():
        tx = make(**kwargs)
        runs[label], _ = tx.update(grads, tx.init(params), params)
    for key, decayed in MASK.items():
        expected = runs["all"][key] if decayed else runs["none"][key]
        np.testing.assert_allclose(runs["masked"][key], expected, rtol=1e-6)
        np.testing.assert_allclose(runs["fn"][key], expected, rtol=1e-6)
    assert not np.allclose(runs["all"]["vector"], runs["none"]["vector"])


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_low_precision_params_keep_float32_estimates(name):
    params = {k: jnp.ones(s, jnp.bfloat16) for k, s in SHAPES.items()}
    tx = getattr(optix, name)()
    state = tx.init(params)
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: (i + 1) * jnp.ones_like(p), params)
        updates, state = jax.jit(tx.update)(grads, state, params)
        params = optix.apply_updates(params, updates)
    assert state.d.dtype == jnp.float32 and state.numerator.dtype == jnp.float32
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_complex_params_converge(name):
    target = jnp.array([1.0 + 2.0j, -0.5j, 3.0])
    loss = lambda p: jnp.sum(jnp.abs(p - target) ** 2)  # noqa: E731
    tx = getattr(optix, name)()
    params = jnp.zeros(3, jnp.complex64)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        grads = jnp.conj(jax.grad(loss, holomorphic=False)(params))
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    for _ in range(300):
        params, state = step(params, state)
    assert float(loss(params)) < 1e-2 * float(loss(jnp.zeros(3, jnp.complex64)))


def test_parameter_free_arguments_are_checked():
    with pytest.raises(ValueError, match="estim_lr0"):
        optix.prodigy(estim_lr0=0.0)
    with pytest.raises(ValueError, match="beta3"):
        optix.prodigy(beta3=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        optix.dadapt_adamw(weight_decay=-1.0)
    with pytest.raises(TypeError, match="estim_lr0"):
        optix.dadapt_adamw(estim_lr0=lambda t: 1e-6)
    state = optix.prodigy().init(jnp.zeros(2))
    with pytest.raises(ValueError, match="estim_lr_coef"):
        optix.set_hyperparams(state, estim_lr_coef=-1.0)
    with pytest.raises(ValueError, match="needs the current parameters"):
        optix.prodigy().update(jnp.ones(2), state)
