"""MatrixSpec: which axes of a leaf form the matrix of Muon, Shampoo and SOAP.

A stack of matrices given by ``batch_axes`` (scanned layers, MoE experts) or cut by ``blocks``
must give exactly the run of the same matrices as separate 2-D leaves; leaves whose layout the
shape cannot tell must be errors naming the leaf; the defaults must keep the 2-D and conv math.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from optix.optimizers._muon_family import muon_labels

MAKERS = {
    "muon": lambda **kw: optix.muon(0.02, weight_decay=0.01, **kw),
    "shampoo": lambda **kw: optix.shampoo(
        0.1, block_size=32, precondition_frequency=3, graft="adam", momentum=0.9, **kw
    ),
    # eps 1e-3: a first step's rotated gradient is diagonal up to round-off, which X / (|X| + eps)
    # scales by |G| / eps (see tests/references.py): batched and single runs round differently
    "shampoo_eigenvalue_corrected": lambda **kw: optix.shampoo(
        0.1,
        eps=1e-3,
        block_size=32,
        precondition_frequency=3,
        stat_decay=0.95,
        graft="sgd",
        momentum=0.9,
        preconditioner="eigenvalue_corrected",
        **kw,
    ),
    "soap": lambda **kw: optix.soap(3e-3, block_size=32, precondition_frequency=3, **kw),
    "psgd_kron": lambda **kw: optix.psgd_kron(1e-2, weight_decay=1e-3, **kw),
}
NAMES = list(MAKERS)


def _run(tx, params, grads):
    """The params after one jitted step per gradient tree of ``grads``."""
    state = tx.init(params)

    @jax.jit
    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return optix.apply_updates(params, updates), state

    for g in grads:
        params, state = step(params, state, g)
    return params


def _stream(rng, shapes, steps):
    return [
        {k: jnp.asarray(rng.standard_normal(s)) for k, s in shapes.items()} for _ in range(steps)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_a_stack_with_batch_axes_equals_independent_matrices(name, x64):
    """A (4, 64, 32) stack with ``batch_axes=(0,)`` takes the steps of 4 separate (64, 32) leaves
    (20 steps, float64): its own statistics, roots, norms and grafting per matrix. Blocks of
    32 x 32 keep the statistics of one gradient full rank (see the expert test)."""
    rng = np.random.default_rng(0)
    p0 = jnp.asarray(rng.standard_normal((4, 64, 32)))
    grads = _stream(rng, {"w": (4, 64, 32)}, 20)
    spec = {"w": optix.MatrixSpec(batch_axes=(0,))}
    stacked = _run(MAKERS[name](matrix_spec=spec), {"w": p0}, grads)["w"]
    split = _run(
        MAKERS[name](),
        {str(i): p0[i] for i in range(4)},
        [{str(i): g["w"][i] for i in range(4)} for g in grads],
    )
    expected = np.stack([split[str(i)] for i in range(4)])
    assert not np.allclose(expected, p0)  # the runs moved
    np.testing.assert_allclose(stacked, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_an_expert_stack_given_by_a_pattern_equals_separate_experts(name, x64):
    """An MoE stack (E, d_in, d_out) under a path pattern, beside a dense kernel and a bias that
    keep their defaults, moves as E separate expert kernels would. The batch axis is the last.

    Square matrices: the statistics of one gradient are then full rank, so SOAP's first
    eigenbases are unique (a null space's basis is arbitrary, and batched and single ``eigh``
    may pick different ones)."""
    rng = np.random.default_rng(1)
    n_e, d_in, d_out = 3, 16, 16
    shapes = {"moe": (d_in, d_out, n_e), "dense": (8, 8), "bias": (8,)}
    params = {k: jnp.asarray(rng.standard_normal(s)) for k, s in shapes.items()}
    grads = _stream(rng, shapes, 20)
    tx = MAKERS[name](matrix_spec={"moe/**": optix.MatrixSpec(batch_axes=(-1,))})
    stacked = _run(tx, params, grads)

    def split(tree):
        out = {k: v for k, v in tree.items() if k != "moe"}
        return out | {f"expert{e}": tree["moe"][..., e] for e in range(n_e)}

    alone = _run(MAKERS[name](), split(params), [split(g) for g in grads])
    expected = np.stack([alone[f"expert{e}"] for e in range(n_e)], axis=-1)
    np.testing.assert_allclose(stacked["moe"], expected, rtol=1e-6, atol=1e-12)
    for k in ("dense", "bias"):
        np.testing.assert_allclose(stacked[k], alone[k], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_blocks_cut_a_fused_matrix_into_independent_matrices(name, x64):
    """``blocks=(1, 3)`` on a fused (d, 3 * d) kernel runs like three (d, d) kernels."""
    rng = np.random.default_rng(2)
    p0 = jnp.asarray(rng.standard_normal((12, 36)))
    grads = _stream(rng, {"qkv": (12, 36)}, 8)
    fused = _run(MAKERS[name](matrix_spec=optix.MatrixSpec(blocks=(1, 3))), {"qkv": p0}, grads)[
        "qkv"
    ]
    cut = lambda x: {str(i): x[:, 12 * i : 12 * (i + 1)] for i in range(3)}  # noqa: E731
    alone = _run(MAKERS[name](), cut(p0), [cut(g["qkv"]) for g in grads])
    expected = np.concatenate([alone[str(i)] for i in range(3)], axis=1)
    np.testing.assert_allclose(fused, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_the_defaults_and_the_old_flattened_view_stay_reachable(name, x64):
    """The 2-D and conv defaults written out change nothing; the merged view of a 3-D leaf that
    was the default before is ``fan_in_axes=(0, 1)``."""
    rng = np.random.default_rng(3)
    shapes = {"w": (6, 5), "conv": (2, 2, 3, 4)}
    params = {k: jnp.asarray(rng.standard_normal(s)) for k, s in shapes.items()}
    grads = _stream(rng, shapes, 5)
    explicit = {
        "w": optix.MatrixSpec(fan_in_axes=(0,), fan_out_axes=(1,)),
        "conv": optix.MatrixSpec(fan_in_axes=(0, 1, 2), fan_out_axes=(-1,)),
    }
    a = _run(MAKERS[name](), params, grads)
    b = _run(MAKERS[name](matrix_spec=explicit), params, grads)
    chex.assert_trees_all_equal(a, b)

    cube = jnp.asarray(rng.standard_normal((2, 3, 4)))
    g3 = _stream(rng, {"c": (2, 3, 4)}, 5)
    merged = optix.MatrixSpec(fan_in_axes=(0, 1), fan_out_axes=(2,))
    got = _run(MAKERS[name](matrix_spec=lambda p: {"c": merged}), {"c": cube}, g3)["c"]
    flat = _run(
        MAKERS[name](), {"c": cube.reshape(6, 4)}, [{"c": g["c"].reshape(6, 4)} for g in g3]
    )
    np.testing.assert_allclose(got, flat["c"].reshape(2, 3, 4), rtol=1e-12, atol=1e-14)


def test_muon_out_in_layout_sets_the_default_sides():
    """With ``layout="out_in"`` a stack ``(L, out, in)`` with ``batch_axes=(0,)`` takes fan-out
    from the first remaining axis, as a 2-D ``(out, in)`` leaf does: its scale uses that side."""
    g = jnp.asarray(np.random.default_rng(4).standard_normal((2, 8, 2)), jnp.float32)
    spec = {"w": optix.MatrixSpec(batch_axes=(0,))}
    tx = optix.scale_by_muon(layout="out_in", matrix_spec=spec)
    u = tx.update({"w": g}, tx.init({"w": g}))[0]["w"]
    one = optix.scale_by_muon(layout="out_in")
    for i in range(2):
        u_i = one.update({"w": g[i]}, one.init({"w": g[i]}))[0]["w"]
        np.testing.assert_allclose(u[i], u_i, rtol=1e-5, atol=1e-6)
    # fan_out = 8 > fan_in = 2: the 'original' scale sqrt(8 / 2) = 2 on top of orthogonality
    s = np.linalg.svd(np.asarray(u[0]), compute_uv=False)
    np.testing.assert_allclose(s, 2.0, rtol=0.3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optix.muon(0.1),
        lambda: optix.scale_by_muon(),
        lambda: optix.shampoo(0.1),
        lambda: optix.soap(0.1),
        lambda: optix.psgd_kron(0.1),
    ],
    ids=["muon", "scale_by_muon", "shampoo", "soap", "psgd_kron"],
)
@pytest.mark.parametrize("shape", [(4, 6, 5), (2, 2, 2, 2, 2)])
def test_a_leaf_of_ambiguous_layout_is_an_error_naming_it(make, shape):
    params = {"layers": {"kernel": jnp.ones(shape)}, "w": jnp.ones((3, 2))}
    with pytest.raises(ValueError, match=r"'layers/kernel'.*matrix_spec.*MatrixSpec\(batch_axes"):
        make().init(params)


def test_a_stack_without_elements_needs_no_spec():
    """Nothing is computed on a leaf with no elements, so its layout is never asked for."""
    params = {"e": jnp.ones((2, 0, 3)), "w": jnp.ones((3, 2))}
    for tx in (optix.muon(0.1), optix.shampoo(0.1), optix.soap(0.1), optix.psgd_kron(0.1)):
        state = tx.init(params)
        u, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
        assert u["e"].shape == (2, 0, 3)


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        (optix.MatrixSpec(batch_axes=(0,), fan_in_axes=(0,)), ValueError, "overlap"),
        (optix.MatrixSpec(fan_in_axes=(0,), fan_out_axes=(3,)), ValueError, "out of range"),
        (optix.MatrixSpec(fan_in_axes=(0,), fan_out_axes=(2,)), ValueError, r"leaves axes \(1,\)"),
        (optix.MatrixSpec(), ValueError, r"leaves 3 axes \(0, 1, 2\)"),
        (optix.MatrixSpec(batch_axes=(0,), fan_in_axes=(1, 2)), ValueError, "fan_out side"),
        (optix.MatrixSpec(batch_axes=(0,), blocks=(4, 1)), ValueError, "equal blocks"),
        ("rows", TypeError, "expected an optix.MatrixSpec"),
    ],
)
def test_spec_errors_name_the_leaf(spec, error, match):
    params = {"stack": jnp.ones((2, 6, 5))}
    for tx in (
        optix.scale_by_muon(matrix_spec={"stack": spec}),
        optix.shampoo(0.1, matrix_spec=spec),
    ):
        with pytest.raises(error, match=match) as info:
            tx.init(params)
        assert "'stack'" in str(info.value)


@pytest.mark.parametrize("make", [optix.muon, optix.normuon], ids=["muon", "normuon"])
def test_muon_labels_a_stack_of_vectors_adam_by_its_spec(make, x64):
    """The biases ``(L, d)`` that a ``"layers/**"`` spec leaves without a matrix take AdamW by
    default, exactly as with the label written out; a ``"muon"`` label on them is an error."""
    rng = np.random.default_rng(6)
    shapes = {"layers": {"w": (3, 8, 4), "b": (3, 4)}, "head": (4, 2), "bias": (2,)}
    params = jax.tree.map(
        lambda s: jnp.asarray(rng.standard_normal(s)),
        shapes,
        is_leaf=lambda x: isinstance(x, tuple),
    )
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape)), params)] * 3
    spec = {"layers/**": optix.MatrixSpec(batch_axes=(0,))}
    labels = muon_labels(params, None, spec)
    assert labels == {"layers": {"w": "muon", "b": "adam"}, "head": "muon", "bias": "adam"}
    by_default = _run(make(0.02, matrix_spec=spec), params, grads)
    written = _run(make(0.02, matrix_spec=spec, labels={"layers/b": "adam"}), params, grads)
    chex.assert_trees_all_equal(by_default, written)
    # the AdamW step: 3 steps of the same gradient move each entry by 3 * lr * sign(g)
    np.testing.assert_allclose(
        by_default["layers"]["b"] - params["layers"]["b"],
        -3 * 0.02 * np.sign(grads[0]["layers"]["b"]),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="'layers/b'.*labelled 'muon'.*leaves no matrix"):
        make(0.1, matrix_spec=spec, labels={"layers/b": "muon"}).init(params)


def test_scale_by_muon_refuses_a_stack_of_vectors():
    params = {"layers": {"b": jnp.zeros((3, 4))}}
    tx = optix.scale_by_muon(matrix_spec={"layers/**": optix.MatrixSpec(batch_axes=(0,))})
    with pytest.raises(ValueError, match="'layers/b'.*leaves no matrix.*'adam'"):
        tx.init(params)


def test_malformed_specs_and_patterns_are_errors():
    with pytest.raises(ValueError, match="twice"):
        optix.MatrixSpec(fan_in_axes=(0, 0))
    with pytest.raises(TypeError, match="ints"):
        optix.MatrixSpec(batch_axes=(0.5,))
    with pytest.raises(ValueError, match="blocks"):
        optix.MatrixSpec(blocks=(0, 1))
    params = {"w": jnp.ones((3, 2))}
    spec = {"experts/**": optix.MatrixSpec(batch_axes=(0,))}
    with pytest.raises(ValueError, match="'experts/\\*\\*' matches no leaf"):
        optix.soap(0.1, matrix_spec=spec).init(params)
    # static and hashable: a spec is a jit-friendly constant, equal by value
    a, b = optix.MatrixSpec(batch_axes=[0]), optix.MatrixSpec(batch_axes=0)
    assert a == b and hash(a) == hash(b) and a.batch_axes == (0,)
    with pytest.raises(AttributeError):
        a.batch_axes = (1,)  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_a_stacked_leaf_under_a_donating_jit_without_retracing(name):
    """One pattern takes a layer stack's kernels (L matrices) and biases (L vectors: no matrix,
    the element-wise rule; Muon sends them to AdamW by label)."""
    params = {
        "layers": {"w": jnp.ones((3, 8, 4)), "b": jnp.zeros((3, 4))},
        "head": jnp.ones((4, 2)),
    }
    spec = {"layers/**": optix.MatrixSpec(batch_axes=(0,))}
    tx = MAKERS[name](matrix_spec=spec)
    state = tx.init(params)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    abstract = jax.eval_shape(tx.init, shapes)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    chex.assert_trees_all_equal_shapes_and_dtypes(abstract, state)

    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @chex.assert_max_traces(n=1)
    def traced(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    step = jax.jit(traced, donate_argnums=(0, 1))
    for seed in range(3):
        grads = jax.tree.map(
            lambda x, s=seed: jnp.cos(jnp.arange(x.size, dtype=x.dtype) + s).reshape(x.shape),
            params,
        )
        old = jax.tree.leaves(params)
        params, state = step(params, state, grads)
        assert all(x.is_deleted() for x in old)
    chex.assert_tree_all_finite(params)


def test_adafactor_factors_each_matrix_of_a_stack_over_its_spec_axes(x64):
    """With E the largest axis, the default factors over (E, d_out); a spec with ``batch_axes``
    factors each expert over (d_in, d_out), as a separate (d_in, d_out) leaf would be."""
    rng = np.random.default_rng(5)
    p0 = jnp.asarray(rng.standard_normal((9, 4, 6)))
    grads = _stream(rng, {"w": (9, 4, 6)}, 6)
    make = lambda **kw: optix.adafactor(0.1, min_dim_size_to_factor=4, momentum=0.9, **kw)  # noqa: E731
    spec = {"w": optix.MatrixSpec(batch_axes=(0,))}
    tx = make(matrix_spec=spec)
    state = tx.init({"w": p0})
    assert [x.shape for x in jax.tree.leaves(state) if x.shape in ((9, 4), (9, 6))] == [
        (9, 4),
        (9, 6),
    ]
    # clipping and the param scale are per leaf, so compare the factored statistics' step alone
    rms = optix.scale_by_factored_rms(min_dim_size_to_factor=4, matrix_spec=spec)
    alone = optix.scale_by_factored_rms(min_dim_size_to_factor=4)
    s, s1 = rms.init({"w": p0}), alone.init({str(i): p0[i] for i in range(9)})
    for g in grads:
        u, s = rms.update(g, s)
        u1, s1 = alone.update({str(i): g["w"][i] for i in range(9)}, s1)
        expected = np.stack([u1[str(i)] for i in range(9)])
        np.testing.assert_allclose(u["w"], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="'w'.*one fan-in and one fan-out axis"):
        optix.scale_by_factored_rms(
            matrix_spec={"w": optix.MatrixSpec(fan_in_axes=(0, 1), fan_out_axes=(2,))}
        ).init({"w": p0})
    assert _run(tx, {"w": p0}, grads)["w"].shape == (9, 4, 6)
