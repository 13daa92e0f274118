"""optix.fuse: fused multi-tensor updates equal the unfused optimizer, for every registry case."""

from __future__ import annotations

import functools as ft

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from optix._fusable import is_elementwise
from optix._fusable import mark_elementwise
from optix.wrappers._fuse import PACK_BELOW
from tests.cases import CASES
from tests.cases import IDS
from tests.tracing import TraceCounter


def _params(dtype=jnp.float32, low=jnp.bfloat16):
    rng = np.random.default_rng(0)
    return {
        "scalar": jnp.asarray(rng.normal(), dtype),
        "vector": jnp.asarray(rng.normal(size=5), dtype),
        "layers": [jnp.asarray(rng.normal(size=(3, 4)), dtype) for _ in range(2)],
        "low": jnp.asarray(rng.normal(size=(2, 3)), low),
    }


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def _packed_leaves(state):
    return [x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optix.Packed))]


def _run(tx, params, steps=4, jit=True):
    traces = TraceCounter()

    @(jax.jit if jit else lambda f: f)
    @traces
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state, updates

    state = tx.init(params)
    for seed in range(steps):
        params, state, updates = step(params, state, _grads(params, seed))
    return params, state, updates, traces.count


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fused_equals_unfused(case):
    params = _params()
    if not is_elementwise(case.make()):
        # run unfused by construction: the fused step is the very same computation
        tx, fused = case.make(), optix.fuse(case.make())
        state = tx.init(params)
        fused_state = fused.init(params)
        assert isinstance(fused_state, optix.FuseState)
        assert jax.tree.structure(fused_state.inner) == jax.tree.structure(state)
        assert not _packed_leaves_any(fused_state)
        grads = _grads(params, 0)
        plain = jax.make_jaxpr(lambda g, s, p: tx.update(g, s, p))(grads, state, params)
        wrapped = jax.make_jaxpr(lambda g, s, p: fused.update(g, optix.FuseState(s), p))(
            grads, state, params
        )
        assert str(wrapped) == str(plain)
        return
    want, _, want_u, _ = _run(case.make(), params, jit=False)  # eager: no compile
    got, state, got_u, traces = _run(optix.fuse(case.make()), params)
    assert traces == 1  # the fused step compiles once
    assert jax.tree.structure(got) == jax.tree.structure(params)
    for g, w, p in zip(
        jax.tree.leaves(got), jax.tree.leaves(want), jax.tree.leaves(params), strict=True
    ):
        assert g.dtype == w.dtype == p.dtype
        # bf16 leaves: the float32 math may round differently by one ulp before the cast.
        tol = 1e-2 if p.dtype == jnp.bfloat16 else 1e-5
        np.testing.assert_allclose(
            np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=tol, atol=tol
        )
    for g, w in zip(jax.tree.leaves(got_u), jax.tree.leaves(want_u), strict=True):
        assert g.dtype == w.dtype
    # the state really is packed: moments, if any, live in one buffer per compute dtype (the
    # bf16 leaves are packed in float32, the dtype their math and moments use)
    for packed in [x for x in _packed_leaves(state) if isinstance(x, optix.Packed)]:
        assert packed.layout.buffer_dtypes == ("float32",)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fused_state_contract(case):
    """eval_shape init, stable structure under jit/scan/cond, hyperparams reachable and settable."""
    tx = optix.fuse(case.make())
    params = _params()
    state = tx.init(params)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    abstract = jax.eval_shape(tx.init, shapes)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    sig = [(x.shape, x.dtype) for x in jax.tree.leaves(state)]
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(abstract)] == sig

    grads = _grads(params, 1)
    stacked = jax.tree.map(lambda g: jnp.stack([g, -g]), grads)

    @jax.jit
    def scan_and_cond(state):
        scanned, _ = jax.lax.scan(lambda s, g: (tx.update(g, s, params)[1], None), state, stacked)
        step = lambda s: tx.update(grads, s, params)[1]  # noqa: E731
        return scanned, jax.lax.cond(True, step, lambda s: s, scanned)

    for new_state in scan_and_cond(state):
        assert jax.tree.structure(new_state) == jax.tree.structure(state)
        assert [(x.shape, x.dtype) for x in jax.tree.leaves(new_state)] == sig

    # a name found in several places is keyed by its path, which fuse prefixes with "inner/"
    fused_hp = {k.removeprefix("inner/"): v for k, v in optix.get_hyperparams(state).items()}
    plain_hp = optix.get_hyperparams(case.make().init(params))
    assert sorted(fused_hp) == sorted(plain_hp)
    for name, value in plain_hp.items():
        np.testing.assert_array_equal(fused_hp[name], value)
    lowered = optix.set_hyperparams(state, learning_rate=1e-4)
    assert float(optix.get_hyperparams(lowered)["learning_rate"]) == pytest.approx(1e-4)


def test_elementwise_marks():
    assert is_elementwise(optix.adam(1e-3))
    assert is_elementwise(optix.chain(optix.clip_by_global_norm(1.0), optix.adamw(1e-3)))
    assert is_elementwise(optix.named_chain(clip=optix.clip(1.0), sgd=optix.sgd(0.1)))
    assert not is_elementwise(optix.noisy_sgd(0.1))  # per-leaf random keys
    assert not is_elementwise(optix.adamw(1e-3, mask={"**/bias": False, "**": True}))
    assert not is_elementwise(optix.chain(optix.adam(1e-3), optix.add_noise()))
    assert not is_elementwise(optix.partition({"a": optix.sgd(0.1)}, {"w": "a"}))


def test_non_elementwise_runs_unfused_and_strict_raises():
    params = _params()
    tx = optix.noisy_sgd(0.1, eta=0.01)
    fused = optix.fuse(tx)
    state = fused.init(params)
    assert not _packed_leaves_any(state)
    want, _ = tx.update(_grads(params, 0), tx.init(params), params)
    got, _ = fused.update(_grads(params, 0), state, params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32))
    with pytest.raises(ValueError, match="not known to be elementwise"):
        optix.fuse(tx, strict=True)
    assert optix.fuse(optix.adam(1e-3), strict=True) is not None


def _packed_leaves_any(state):
    nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optix.Packed))
    return any(isinstance(x, optix.Packed) for x in nodes)


def test_fused_state_is_packed_and_small():
    params = {f"w{i}": jnp.ones((7,)) for i in range(50)}
    state = optix.fuse(optix.adam(1e-3)).init(params)
    assert len(jax.tree.leaves(state.inner[0].mu)) == 1
    assert state.inner[0].mu.buffers[0].shape == (350,)
    assert len(jax.tree.leaves(optix.adam(1e-3).init(params))) > 100
    assert len(jax.tree.leaves(state)) < 15


def test_fuse_passes_packed_updates_through():
    params = _params()
    packed = optix.pack(params)
    tx = optix.fuse(optix.adam(1e-2))
    state = tx.init(packed)
    grads = optix.pack(_grads(params, 0))
    updates, _ = tx.update(grads, state, packed)
    assert isinstance(updates, optix.Packed)
    plain = optix.adam(1e-2)
    want, _ = plain.update(_grads(params, 0), plain.init(params), params)
    for g, w in zip(jax.tree.leaves(optix.unpack(updates)), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=1e-6)


def test_mu_dtype_applies_to_packed_moments():
    params = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
    state = optix.fuse(optix.adam(1e-3, mu_dtype=jnp.bfloat16)).init(params)
    assert [b.dtype for b in state.inner[0].mu.buffers] == [jnp.bfloat16]
    assert [b.dtype for b in state.inner[0].nu.buffers] == [jnp.float32]


def test_fuse_inside_chain_and_custom_marked_transform():
    params = _params()
    halve = mark_elementwise(optix.stateless(lambda u, p: jax.tree.map(lambda x: x / 2, u)))
    tx = optix.fuse(optix.chain(halve, optix.sgd(0.1, momentum=0.9)), strict=True)
    ref = optix.chain(optix.scale(0.5), optix.sgd(0.1, momentum=0.9))
    got = _run(tx, params)[0]
    want = _run(ref, params)[0]
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(
            np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=1e-2, atol=1e-6
        )


def test_fuse_checks_its_argument_and_state():
    with pytest.raises(TypeError, match="not a gradient transformation"):
        optix.fuse(optix.adam)  # type: ignore[arg-type]
    tx = optix.fuse(optix.adam(1e-3))
    with pytest.raises(ValueError, match="FuseState"):
        tx.update({"a": jnp.ones(2)}, optix.adam(1e-3).init({"a": jnp.ones(2)}))


def test_fuse_takes_bf16_params_with_float32_gradients_as_plain_tx_does():
    params = {"low": jnp.ones((2, 3), jnp.bfloat16), "w": jnp.full(4, 0.5)}
    grads = {"low": jnp.full((2, 3), 0.25, jnp.float32), "w": jnp.full(4, -1.0)}
    plain, fused = (
        optix.adamw(1e-2, weight_decay=0.1),
        optix.fuse(optix.adamw(1e-2, weight_decay=0.1)),
    )
    want, _ = plain.update(grads, plain.init(params), params)
    got, state = fused.update(grads, fused.init(params), params)
    assert [b.dtype for b in state.inner[0].mu.buffers] == [jnp.float32]
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype == jnp.float32  # each update in its gradient's dtype
        np.testing.assert_allclose(g, w, rtol=1e-6)


@pytest.mark.parametrize("leaf", [np.array([1.0, -2.0, 0.5]), 1.5], ids=["numpy_float64", "float"])
def test_fuse_takes_numpy_and_python_float_params_as_plain_tx_does(leaf):
    params = {"a": leaf, "w": jnp.ones((2, 2))}
    grads = {"a": jnp.full(np.shape(leaf), 0.5), "w": jnp.full((2, 2), -1.0)}
    plain, fused = (
        optix.adamw(1e-2, weight_decay=0.1),
        optix.fuse(optix.adamw(1e-2, weight_decay=0.1)),
    )
    want, _ = plain.update(grads, plain.init(params), params)
    got, _ = jax.jit(fused.update)(grads, fused.init(params), params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_pack_takes_numpy_float64_and_python_float_leaves():
    tree = {"f": 1.5, "n": np.array([1.0, 2.0]), "w": jnp.ones(2)}
    packed = optix.pack(tree)
    assert packed.layout.buffer_dtypes == ("float32",)
    back = optix.unpack(packed)
    assert back["f"].shape == () and back["f"].dtype == jnp.float32
    np.testing.assert_array_equal(back["n"], [1.0, 2.0])
    np.testing.assert_array_equal(back["f"], 1.5)


def test_pack_like_names_the_leaf_that_does_not_fit():
    from optix._pack import pack_like

    layout = optix.pack({"a": jnp.ones(3), "b": {"c": jnp.ones(2)}}).layout
    with pytest.raises(ValueError, match=r"leaf 'b/c' of shape \(3,\)"):
        pack_like({"a": jnp.ones(3), "b": {"c": jnp.ones(3)}}, layout)


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        ({"a": jnp.ones(3), "b": jnp.ones(3)}, r"updates leaf 'b' has shape \(3,\)"),
        ({"a": jnp.ones(3)}, r"'b' is in the params the `fuse` state was built from"),
        ({"a": jnp.ones(3), "b": jnp.ones(2), "c": jnp.ones(1)}, r"'c' is in updates but not"),
        (
            {"a": jnp.ones(3), "b": jnp.ones(2, jnp.int32)},
            r"`fuse` updates leaf 'b' has dtype int32",
        ),
    ],
    ids=["shape", "missing", "extra", "int"],
)
def test_fuse_errors_name_the_users_leaf_paths_not_buffers(updates, match):
    tx = optix.fuse(optix.adam(1e-3))
    state = tx.init({"a": jnp.ones(3), "b": jnp.ones(2)})
    with pytest.raises((ValueError, TypeError), match=match) as info:
        tx.update(updates, state)
    assert "buffer" not in str(info.value) and "PyTreeDef" not in str(info.value)


def test_fuse_init_names_the_users_path_of_an_integer_param():
    with pytest.raises(TypeError, match="`fuse` params leaf 'n' has dtype int32"):
        optix.fuse(optix.adam(1e-3)).init({"a": jnp.ones(3), "n": jnp.ones(2, jnp.int32)})


def test_fuse_params_that_do_not_fit_the_updates_name_the_path():
    tx = optix.fuse(optix.adamw(1e-3))
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"params leaf 'b' of shape \(3,\)"):
        tx.update(params, state, {"a": jnp.ones(3), "b": jnp.ones(3)})


# --- small leaves packed, large leaves kept as they are ----------------------------------------

_MIXED_PACK_BELOW = 32  # leaves of at least 32 elements are kept, so the tests stay small


def _mixed_params():
    rng = np.random.default_rng(1)
    shapes = {"emb": (16, 8), "b": (8,), "scale": (), "w": (8, 8), "ln": (3,), "proj": (40,)}
    return {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}


def _mixed_grads(params, seed):
    rng = np.random.default_rng(seed)  # large enough that clip_by_global_norm(1.0) clips
    return jax.tree.map(lambda p: jnp.asarray(3 * rng.normal(size=p.shape), p.dtype), params)


_MIXED_TXS = {
    "adam": lambda: optix.adam(1e-2),
    "adamw_mask": lambda: optix.adamw(1e-2, weight_decay=0.1, mask={"b": False, "**": True}),
    "sgd_momentum": lambda: optix.sgd(0.1, momentum=0.9),
    "clip_adamw": lambda: optix.chain(
        optix.clip_by_global_norm(1.0), optix.adamw(1e-2, weight_decay=0.1)
    ),
}


@pytest.mark.parametrize("name", list(_MIXED_TXS))
def test_fuse_packs_small_leaves_keeps_large_ones_and_equals_unfused(name):
    params = _mixed_params()
    tx = optix.fuse(_MIXED_TXS[name](), pack_below=_MIXED_PACK_BELOW)
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)  # the second and third steps reuse the compiled step
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    plain = _MIXED_TXS[name]()
    want, want_state = params, plain.init(params)
    got, state = jax.tree.map(jnp.copy, params), tx.init(params)
    for seed in range(3):
        grads = _mixed_grads(params, seed)
        updates, want_state = plain.update(grads, want_state, want)
        want = optix.apply_updates(want, updates)
        got, state = step(got, state, grads)
    for path in params:
        np.testing.assert_allclose(got[path], want[path], rtol=1e-6, atol=1e-7, err_msg=path)
    if is_elementwise(plain):  # buffers hold the small leaves, the large ones are kept
        moments = [x for x in _packed_leaves(state) if isinstance(x, optix.Packed)]
        assert moments
        for packed in moments:
            assert packed.layout.sizes == (12,)  # b, scale and ln
            assert [x.shape for x in packed.kept] == [(16, 8), (40,), (8, 8)]
    else:  # a masked transform is not elementwise: run leaf by leaf, unchanged
        assert not _packed_leaves_any(state)


def test_fuse_pack_below_chooses_what_is_packed():
    params = _mixed_params()
    everything = optix.fuse(optix.adam(1e-3), pack_below=None).init(params)
    assert everything.inner[0].mu.layout.sizes == (128 + 8 + 1 + 64 + 3 + 40,)
    assert everything.inner[0].mu.kept == ()
    nothing = optix.fuse(optix.adam(1e-3), pack_below=0).init(params)
    assert nothing.inner[0].mu.buffers == () and len(nothing.inner[0].mu.kept) == len(params)
    default = optix.fuse(optix.adam(1e-3)).init({"big": jnp.zeros(PACK_BELOW), "small": 1.0})
    assert [x.shape for x in default.inner[0].mu.kept] == [(PACK_BELOW,)]
    with pytest.raises(ValueError, match="pack_below must be >= 0"):
        optix.fuse(optix.adam(1e-3), pack_below=-1)
    with pytest.raises(TypeError, match="pack_below must be an int or None"):
        optix.fuse(optix.adam(1e-3), pack_below=1e4)  # type: ignore[arg-type]


def test_masks_resolve_through_a_layout_with_kept_leaves():
    """A mask on params packed with some leaves kept gives each element its leaf's flag (what
    lets a masked transform run on the fused layout)."""
    from optix._pack import layout_of
    from optix._pack import pack_like

    params = _mixed_params()
    layout, _ = layout_of(params, pack_below=_MIXED_PACK_BELOW)
    packed = pack_like(params, layout)
    mask = {"b": False, "w": False, "**": True}
    tx = optix.adamw(1e-2, weight_decay=0.5, mask=mask)
    grads = _mixed_grads(params, 0)
    run = jax.jit(lambda g, p: tx.update(g, tx.init(p), p)[0])
    got, want = run(pack_like(grads, layout), packed), run(grads, params)
    got = optix.unpack(got)
    for path in params:
        np.testing.assert_allclose(got[path], want[path], rtol=1e-6, err_msg=path)


def _nnx_model():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.inner = nnx.Linear(2, 8, rngs=rngs)  # kernel 16, bias 8: packed
            self.outer = nnx.Linear(8, 5, rngs=rngs)  # kernel 40: kept; bias 5: packed

        def __call__(self, x):
            return self.outer(jnp.tanh(self.inner(x)))

    return Net(nnx.Rngs(0))


def test_fuse_through_nnx_optimizer_under_nnx_jit():
    from flax import nnx

    def loss(model):
        return jnp.mean((model(jnp.linspace(-1.0, 1.0, 6).reshape(3, 2)) - 1.0) ** 2)

    models, optimizers, traces = [], [], TraceCounter()
    for tx in (optix.adam(1e-2), optix.fuse(optix.adam(1e-2), pack_below=_MIXED_PACK_BELOW)):
        models.append(_nnx_model())
        optimizers.append(nnx.Optimizer(models[-1], tx, wrt=nnx.Param))

    @nnx.jit
    @traces
    def step(model, optimizer):
        optimizer.update(model, nnx.grad(loss)(model))

    for _ in range(3):
        for model, optimizer in zip(models, optimizers, strict=True):
            step(model, optimizer)
    assert traces.count == 2  # once per optimizer
    mu = optimizers[1].opt_state.inner[0].mu
    assert isinstance(mu, optix.Packed) and len(mu.kept) == 1
    want, got = (nnx.state(m, nnx.Param) for m in models)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_fuse_in_a_train_state_with_donation_and_an_equinox_loop():
    import equinox as eqx
    from flax.training.train_state import TrainState

    params = _mixed_params()
    make = lambda: optix.adamw(1e-2, weight_decay=0.1)  # noqa: E731
    fused = optix.fuse(make(), pack_below=_MIXED_PACK_BELOW)
    loss = lambda p: sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(p))  # noqa: E731

    @jax.jit
    def reference(params, state):
        updates, state = make().update(jax.grad(loss)(params), state, params)
        return optix.apply_updates(params, updates), state

    @ft.partial(jax.jit, donate_argnums=0)
    def train_step(ts):
        return ts.apply_gradients(grads=jax.grad(loss)(ts.params))

    ts = TrainState.create(apply_fn=None, params=jax.tree.map(jnp.copy, params), tx=fused)
    want, state = params, make().init(params)
    for _ in range(3):
        ts = train_step(ts)
        want, state = reference(want, state)
    for path in params:
        np.testing.assert_allclose(ts.params[path], want[path], rtol=1e-6, err_msg=path)

    # equinox: params are the array leaves of a module, filtered, then updated in place
    model = eqx.nn.Linear(8, 5, key=jax.random.key(0))
    reference_model = model
    state = fused.init(eqx.filter(model, eqx.is_array))
    plain_state = make().init(eqx.filter(model, eqx.is_array))
    eqx_loss = lambda m: jnp.sum(jnp.sin(m(jnp.ones(8))))  # noqa: E731

    @eqx.filter_jit
    def eqx_step(model, state, tx):
        grads = eqx.filter_grad(eqx_loss)(model)
        updates, state = tx.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state

    for _ in range(2):
        model, state = eqx_step(model, state, fused)
        reference_model, plain_state = eqx_step(reference_model, plain_state, make())
    assert isinstance(state.inner[0].mu, optix.Packed) and len(state.inner[0].mu.kept) == 1
    np.testing.assert_allclose(model.weight, reference_model.weight, rtol=1e-6)
    np.testing.assert_allclose(model.bias, reference_model.bias, rtol=1e-6)


def test_fused_state_orbax_round_trip(tmp_path):
    import orbax.checkpoint as ocp

    params = _mixed_params()
    tx = optix.fuse(
        optix.chain(optix.clip_by_global_norm(1.0), optix.adamw(1e-2)),
        pack_below=_MIXED_PACK_BELOW,
    )
    step = jax.jit(lambda p, s, g: tx.update(g, s, p))
    state = tx.init(params)
    for seed in range(2):
        _, state = step(params, state, _mixed_grads(params, seed))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", state)
        ckpt.wait_until_finished()
        restored = ckpt.restore(tmp_path / "ckpt", jax.eval_shape(tx.init, params))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    grads = _mixed_grads(params, 5)
    for a, b in zip(
        jax.tree.leaves(step(params, restored, grads)),
        jax.tree.leaves(step(params, state, grads)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_mark_elementwise_and_is_elementwise():
    from optix._fusable import is_elementwise
    from optix._fusable import mark_elementwise

    assert is_elementwise(mark_elementwise(optix.identity()))
    assert is_elementwise(optix.adam(1e-3)) and not is_elementwise(optix.noisy_sgd(0.1))
