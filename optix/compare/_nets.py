r"""The models of the built-in workloads, in plain ``jax.numpy`` (no neural-network library).

Each model is an ``init(seed) -> params`` factory (pure JAX, so it can be vmapped over seeds)
and an ``apply(params, x) -> outputs`` function. Initialisation follows LeCun / Glorot scaling:
weights ``N(0, 1 / fan_in)``, biases zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of integer ``labels`` under ``logits`` (classes on the last axis)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], axis=-1))


Spec = dict[str, tuple[tuple[int, ...], float | str]]


def _init_from(spec: Spec) -> Callable[[Any], Params]:
    """``init(seed)`` for leaves ``name: (shape, scale)``: ``scale`` times a standard normal, or
    ``"zeros"`` / ``"ones"``. All normal leaves come from one draw (one PRNG call compiles in a
    fraction of the time of one per leaf), jitted once."""
    sizes = {
        k: math.prod(shape) for k, (shape, scale) in spec.items() if not isinstance(scale, str)
    }

    def init(seed: Any) -> Params:
        flat = jax.random.normal(jax.random.PRNGKey(seed), (sum(sizes.values()),), jnp.float32)
        params, offset = {}, 0
        for name, (shape, scale) in spec.items():
            if isinstance(scale, str):
                params[name] = (jnp.ones if scale == "ones" else jnp.zeros)(shape, jnp.float32)
            else:
                params[name] = scale * flat[offset : offset + sizes[name]].reshape(shape)
                offset += sizes[name]
        return params

    return jax.jit(init)


def _dense(fan_in: int, fan_out: int) -> tuple[tuple[int, ...], float]:
    return (fan_in, fan_out), 1.0 / math.sqrt(fan_in)


def _affine(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    return x @ w + jnp.expand_dims(b, tuple(range(x.ndim - 1)))


def linear_init(n_in: int, n_out: int) -> Callable[[Any], Params]:
    return _init_from({"w": ((n_in, n_out), 0.01), "b": ((n_out,), "zeros")})


def linear_apply(p: Params, x: jax.Array) -> jax.Array:
    return _affine(x, p["w"], p["b"])


def mlp_init(sizes: tuple[int, ...]) -> Callable[[Any], Params]:
    """A tanh MLP with layer widths ``sizes`` (input first, output last)."""

    spec: Spec = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        spec |= {f"w{i}": _dense(n_in, n_out), f"b{i}": ((n_out,), "zeros")}
    return _init_from(spec)


def mlp_apply(p: Params, x: jax.Array) -> jax.Array:
    n_layers = len(p) // 2
    for i in range(n_layers):
        x = _affine(x, p[f"w{i}"], p[f"b{i}"])
        if i < n_layers - 1:
            x = jnp.tanh(x)
    return x


def cnn_init(channels: tuple[int, int] = (8, 16), n_out: int = 10) -> Callable[[Any], Params]:
    """Two 3x3 convolutions (ReLU, 2x2 average pooling after each) and a dense layer, on 8x8."""
    c1, c2 = channels
    return _init_from({
        "conv1": ((3, 3, 1, c1), math.sqrt(2 / 9)),
        "b1": ((c1,), "zeros"),
        "conv2": ((3, 3, c1, c2), math.sqrt(2 / (9 * c1))),
        "b2": ((c2,), "zeros"),
        "w": _dense(4 * c2, n_out),
        "b": ((n_out,), "zeros"),
    })  # fmt: skip


def _conv_relu_pool(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """A 3x3 "same" convolution as one matrix product over the 9 shifted copies of ``x`` (cheap
    under ``vmap`` over weights, unlike a batched-kernel convolution), ReLU, 2x2 average pooling."""
    n, height, width, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, i : i + height, j : j + width, :] for i in range(3) for j in range(3)], axis=-1
    )  # (n, H, W, 9 c), ordered like w's (3, 3, c) leading axes
    y = patches @ w.reshape(9 * c, -1)
    y = jax.nn.relu(y + b[None, None, None, :])
    return y.reshape(n, height // 2, 2, width // 2, 2, -1).mean(axis=(2, 4))


def cnn_apply(p: Params, x: jax.Array) -> jax.Array:
    """Logits for flat 64-pixel rows ``x`` (reshaped to 8x8 images, one channel)."""
    h = x.reshape(x.shape[0], 8, 8, 1)
    h = _conv_relu_pool(h, p["conv1"], p["b1"])  # 4x4
    h = _conv_relu_pool(h, p["conv2"], p["b2"])  # 2x2
    return _affine(h.reshape(h.shape[0], -1), p["w"], p["b"])


def gru_init(vocab: int, hidden: int) -> Callable[[Any], Params]:
    """A one-layer GRU language model on one-hot tokens (so the input weights are a lookup table,
    ``wx[token]``) with a softmax readout."""

    return _init_from({
        "wx": ((vocab, 3 * hidden), 1.0),
        "wh": _dense(hidden, 3 * hidden),
        "b": ((3 * hidden,), "zeros"),
        "wo": _dense(hidden, vocab),
        "bo": ((vocab,), "zeros"),
    })  # fmt: skip


def gru_apply(p: Params, x: jax.Array) -> jax.Array:
    r"""Next-token logits ``(n, T, vocab)`` for tokens ``x`` ``(n, T)``: the GRU of Cho et al.,
    `Learning phrase representations using RNN encoder-decoder <https://arxiv.org/abs/1406.1078>`_,
    on one-hot inputs :math:`e_{x_t}`, gates in the order reset, update, candidate:

    .. math:: r, z = \sigma(W_x e_{x_t} + W_h h + b)_{r,z}, \quad
       n = \tanh((W_x e_{x_t} + b)_n + r \odot (W_h h)_n), \quad h' = (1 - z) \odot n + z \odot h
    """
    hidden = p["wh"].shape[0]
    gxs = p["wx"][x] + p["b"][None, None, :]  # (n, T, 3H): the input part of every step

    def cell(h: jax.Array, gx: jax.Array) -> tuple[jax.Array, jax.Array]:
        gh = h @ p["wh"]
        r = jax.nn.sigmoid(gx[:, :hidden] + gh[:, :hidden])
        z = jax.nn.sigmoid(gx[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        n = jnp.tanh(gx[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        h = (1 - z) * n + z * h
        return h, h

    h0 = jnp.zeros((x.shape[0], hidden), gxs.dtype)
    _, hs = jax.lax.scan(cell, h0, jnp.swapaxes(gxs, 0, 1))
    return _affine(jnp.swapaxes(hs, 0, 1), p["wo"], p["bo"])


def transformer_init(
    vocab: int, length: int, d_model: int, n_layers: int = 1
) -> Callable[[Any], Params]:
    """A pre-LayerNorm decoder-only transformer: learned positions, causal attention, MLP x2."""

    d = d_model
    spec: Spec = {
        "embed": ((vocab, d), 1.0),
        "pos": ((length, d), 0.1),
        "wo": _dense(d, vocab),
        "ln_g": ((d,), "ones"),
        "ln_b": ((d,), "zeros"),
    }
    for i in range(n_layers):
        spec |= {
            f"qkv{i}": _dense(d, 3 * d),
            f"proj{i}": _dense(d, d),
            f"up{i}": _dense(d, 2 * d),
            f"down{i}": _dense(2 * d, d),
            f"ln1_g{i}": ((d,), "ones"),
            f"ln1_b{i}": ((d,), "zeros"),
            f"ln2_g{i}": ((d,), "ones"),
            f"ln2_b{i}": ((d,), "zeros"),
        }
    return _init_from(spec)


def _layer_norm(x: jax.Array, g: jax.Array, b: jax.Array) -> jax.Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * g[None, None, :] + b[None, None, :]


def transformer_apply(p: Params, x: jax.Array, n_heads: int = 2) -> jax.Array:
    r"""Next-token logits ``(n, T, vocab)`` for tokens ``x`` ``(n, T)`` (Vaswani et al.,
    `Attention is all you need <https://arxiv.org/abs/1706.03762>`_, with pre-LayerNorm)."""
    n, length = x.shape
    d_model = p["embed"].shape[1]
    dh = d_model // n_heads
    h = p["embed"][x] + p["pos"][None, :length, :]
    causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
    for i in range(sum(k.startswith("qkv") for k in p)):
        a = _layer_norm(h, p[f"ln1_g{i}"], p[f"ln1_b{i}"]) @ p[f"qkv{i}"]
        q, k, v = (a[..., j * d_model : (j + 1) * d_model].reshape(n, length, n_heads, dh)
                   for j in range(3))  # fmt: skip
        scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(dh)
        weights = jax.nn.softmax(jnp.where(causal, scores, -1e9), axis=-1)
        att = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, length, d_model)
        h = h + att @ p[f"proj{i}"]
        m = _layer_norm(h, p[f"ln2_g{i}"], p[f"ln2_b{i}"]) @ p[f"up{i}"]
        h = h + jax.nn.gelu(m) @ p[f"down{i}"]
    return _layer_norm(h, p["ln_g"], p["ln_b"]) @ p["wo"]
