"""Independent implementations the reference registry (``tests/references.py``) checks optix
against: NumPy transcriptions of the papers' algorithm boxes and of the authors' code, and
optax chains rebuilt from optax's own pieces where optax's alias rounds in float32.

Each is an object with optax's ``init``/``update`` protocol; the ones that cannot be jitted (plain
NumPy state) are run by ``tests.reference.run_eager``; ``NumpyTransform`` runs a NumPy
transcription under ``jax.jit`` through ``jax.pure_callback``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optix
from tests.reference import SHAPES


def decay_mask(params):
    """Weight decay on the vector and the matrix, not on the scalar."""
    return {k: v.ndim >= 1 for k, v in params.items()}


def cosine_schedule(t):
    """A cosine decay from 0.06 to 0.01 over 100 steps (in float64 under x64)."""
    frac = jnp.minimum(jnp.asarray(t), 100).astype(float) / 100
    return 0.05 * (1 + jnp.cos(jnp.pi * frac)) / 2 + 0.01


def numpy_cosine_schedule(t):
    return float(cosine_schedule(t))


# --- AdEMAMix and Adan ---------------------------------------------------------------------------


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


def masked_paper_adan():
    """``adan_paper`` with the decay restricted to ``decay_mask``: the decay-free transcription
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
        mask = decay_mask(params)
        out = {k: u - self.c * params[k] if mask[k] else u for k, u in updates.items()}
        return out, state


# --- Adafactor and SM3 -------------------------------------------------------------------------


def _decay_f64(step, exponent):
    return 1.0 - jnp.asarray(step + 1, jnp.float64) ** (-exponent)


def optax_adafactor_f64(
    lr,
    min_dim=128,
    *,
    decay_rate=0.8,
    offset=0,
    mbps=True,
    clip=1.0,
    momentum=None,
    wd=None,
    eps=1e-30,
    factored=True,
):
    """``optax.adafactor``'s chain (optax/_src/alias.py), from optax's pieces, float64 decay."""
    parts = [
        optax.scale_by_factored_rms(
            factored, decay_rate, offset, min_dim, eps, decay_rate_fn=_decay_f64
        )
    ]
    if clip is not None:
        parts.append(optax.clip_by_block_rms(clip))
    parts.append(optax.scale_by_learning_rate(lr, flip_sign=False))
    if mbps:
        parts.append(optax.scale_by_param_block_rms())
    if momentum is not None:
        parts.append(optax.ema(momentum, debias=False, accumulator_dtype=jnp.float64))
    if wd is not None:
        parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.scale(-1))
    return optax.chain(*parts)


class Sm3Paper:
    """NumPy transcription of SM3-II (Anil, Gupta, Koren & Singer 2019, the algorithm box
    "SM3-II"), one accumulator ``mu'(r)`` per cover set ``S_r``. Per step, with all ``mu'_t(r)``
    started at 0:

        nu'_t(i) = min_{r: S_r contains i} mu'_{t-1}(r) + g_t(i)^2
        w_{t+1}(i) = w_t(i) - eta g_t(i) / sqrt(nu'_t(i))        (0/0 = 0)
        mu'_t(r) = max(mu'_t(r), nu'_t(i))   for every r with i in S_r

    The cover of a rank-p tensor is its co-dimension-1 slices ``S_(a, j) = {i : i_a = j}`` (the
    paper's choice for matrices and tensors); a scalar's cover is one set. As in optax (and the
    optimizer's momentum option), ``eps`` is added under the root and the step uses
    ``m_t = beta m_{t-1} + (1 - beta) g_t / sqrt(nu'_t + eps)``; ``beta = eps = 0`` is the box
    exactly. Written element by element, on purpose independent of optix's vectorised form.
    """

    def __init__(self, lr, beta, eps):
        self.lr, self.beta, self.eps = lr, beta, eps

    @staticmethod
    def cover(shape):
        if not shape:
            return [("all",)]
        return [(a, j) for a in range(len(shape)) for j in range(shape[a])]

    @staticmethod
    def contains(r, index):
        return r == ("all",) or index[r[0]] == r[1]

    def init(self, params):
        mu = {k: dict.fromkeys(self.cover(np.shape(p)), 0.0) for k, p in params.items()}
        return mu, {k: np.zeros(np.shape(p)) for k, p in params.items()}

    def update(self, grads, state, params=None):
        mu_prev, m = state
        mu_new, m_new, out = {}, {}, {}
        for k, g in grads.items():
            g = np.asarray(g, np.float64)
            acc = dict.fromkeys(mu_prev[k], 0.0)
            pre = np.zeros(g.shape)
            for index in itertools.product(*(range(n) for n in g.shape)):
                sets = [r for r in acc if self.contains(r, index)]
                nu = min(mu_prev[k][r] for r in sets) + g[index] ** 2
                pre[index] = g[index] / math.sqrt(nu + self.eps) if nu > 0 else 0.0
                for r in sets:
                    acc[r] = max(acc[r], nu)
            mu_new[k] = acc
            m_new[k] = self.beta * m[k] + (1 - self.beta) * pre
            out[k] = -self.lr * m_new[k]
        return out, (mu_new, m_new)


# --- Muon, Shampoo and SOAP ---------------------------------------------------------------------


class NumpyTransform:
    """A NumPy transcription in optax's init/update protocol, usable under ``jax.jit``.

    ``init_np(params) -> state`` and ``update_np(grads, state, params) -> (updates, state)`` work
    on dicts of float64 NumPy arrays; the state travels through JAX as arrays and the update runs
    as a ``jax.pure_callback``, so the transcription itself stays plain NumPy.
    """

    def __init__(self, init_np, update_np):
        self.init_np, self.update_np = init_np, update_np

    def init(self, params):
        return jax.tree.map(jnp.asarray, self.init_np(jax.tree.map(np.asarray, params)))

    def update(self, grads, state, params=None):
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), (grads, state))

        def call(g, s, p):
            as_np = lambda t: jax.tree.map(lambda x: np.array(x, np.float64), t)  # noqa: E731
            u, s = self.update_np(as_np(g), as_np(s), as_np(p))
            return jax.tree.map(np.asarray, u), jax.tree.map(np.asarray, s)

        return jax.pure_callback(call, shapes, grads, state, params)


def optax_muon(lr, **kw):
    """optax.contrib.muon on the matrix, optax.adamw (= optix's AdamW branch) elsewhere."""
    labels = {"scalar": "adam", "vector": "adam", "matrix": "muon"}
    return optax.partition(
        {
            "muon": optax.contrib.muon(lr, **kw),
            "adam": optax.adamw(lr, eps=1e-8, weight_decay=0.0),
        },
        labels,
    )


# Polar Express, Algorithm 1 of Amsel, Persson, Musco & Gower 2025 (arXiv:2505.16932): the
# published degree-5 triples; all but the last are evaluated at x / 1.01 (the safety factor).
_PE_TRIPLES = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
]


def numpy_polar_express(g, steps=5, eps=1e-7):
    """Algorithm 1 in float64 NumPy, with eps clamping the scaled norm (optix's default)."""
    safe = [(a / 1.01, b / 1.01**3, c / 1.01**5) for a, b, c in _PE_TRIPLES[:-1]]
    schedule = [*safe, *[_PE_TRIPLES[-1]] * steps][:steps]
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / max(1.01 * np.linalg.norm(x), eps)
    for a, b, c in schedule:
        gram = x @ x.T
        x = a * x + b * (gram @ x) + c * (gram @ (gram @ x))
    return x.T if g.shape[0] > g.shape[1] else x


def numpy_muon(lr, beta=0.95, eps=1e-7, b1=0.9, b2=0.999, adam_eps=1e-8, orthogonalize=None):
    """Muon (Jordan's EMA momentum, Nesterov, scale sqrt(max(1, fan_out / fan_in)) on (in, out)
    matrices) with the orthogonaliser ``orthogonalize(x)``; AdamW without decay elsewhere."""
    orthogonalize = orthogonalize or numpy_polar_express

    def init(params):
        state = {"t": np.zeros(())}
        for k, p in params.items():
            state[k + "/m"], state[k + "/v"] = np.zeros(p.shape), np.zeros(p.shape)
        return state

    def update(grads, state, params):
        s = dict(state)
        t = int(s["t"]) + 1
        out = {}
        for k, g in grads.items():
            m = s[k + "/m"]
            if g.ndim == 2:
                m = beta * m + (1 - beta) * g
                o = orthogonalize(beta * m + (1 - beta) * g)
                out[k] = -lr * math.sqrt(max(1.0, g.shape[1] / g.shape[0])) * o
            else:
                m = b1 * m + (1 - b1) * g
                v = s[k + "/v"] = b2 * s[k + "/v"] + (1 - b2) * g * g
                mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
                out[k] = -lr * mhat / (np.sqrt(vhat) + adam_eps)
            s[k + "/m"] = m
        s["t"] = np.asarray(float(t))
        return out, s

    return NumpyTransform(init, update)


def numpy_normuon(lr, beta=0.95, b2=0.95, eps=1e-8, rms=0.2, weight_decay=0.0):
    """NorMuon, Algorithm 1 of Li et al. 2025 (arXiv:2510.05491), on (in, out) matrices: neurons
    are columns (the paper's rows of an (out, in) weight); Newton-Schulz with Jordan's quintic.
    AdamW without decay elsewhere."""

    def ns(g, steps=5, eps_ns=1e-7):
        a, b, c = 3.4445, -4.7750, 2.0315
        x = g.T if g.shape[0] > g.shape[1] else g
        x = x / max(np.linalg.norm(x), eps_ns)
        for _ in range(steps):
            gram = x @ x.T
            x = a * x + b * (gram @ x) + c * (gram @ (gram @ x))
        return x.T if g.shape[0] > g.shape[1] else x

    def init(params):
        state = {"t": np.zeros(())}
        for k, p in params.items():
            state[k + "/m"], state[k + "/v"] = np.zeros(p.shape), np.zeros(p.shape)
            if p.ndim == 2:
                state[k + "/v"] = np.zeros(p.shape[1])
        return state

    def update(grads, state, params):
        s = dict(state)
        t = int(s["t"]) + 1
        out = {}
        for k, g in grads.items():
            if g.ndim == 2:
                m = s[k + "/m"] = beta * s[k + "/m"] + (1 - beta) * g
                o = ns(m)
                v = s[k + "/v"] = b2 * s[k + "/v"] + (1 - b2) * np.mean(o * o, axis=0)
                o = o / (np.sqrt(v)[None, :] + eps)
                norm = np.linalg.norm(o)
                step = rms * math.sqrt(g.size) / norm * o if norm > 0 else 0 * o
                out[k] = -lr * (step + weight_decay * params[k])
            else:
                m = s[k + "/m"] = 0.9 * s[k + "/m"] + 0.1 * g
                v = s[k + "/v"] = 0.999 * s[k + "/v"] + 0.001 * g * g
                out[k] = -lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        s["t"] = np.asarray(float(t))
        return out, s

    return NumpyTransform(init, update)


def _np_splits(dim, block_size):
    if block_size is None or dim <= block_size:
        return [(0, dim)]
    return [(s, min(s + block_size, dim)) for s in range(0, dim, block_size)]


def _np_blocks(shape, block_size):
    return [
        (slice(*r), slice(*c))
        for r in _np_splits(shape[0], block_size)
        for c in _np_splits(shape[1], block_size)
    ]


def _np_root(stat, eps, p):
    """(stat + eps I)^{-1/p}: Algorithm 1 keeps L_t = eps I + sum G G^T."""
    lam, q = np.linalg.eigh(stat + eps * np.eye(len(stat)))
    return (q * lam ** (-1.0 / p)) @ q.T


def _np_graft(graft, s, key, g, u, t, graft_eps, graft_b2):
    """``u`` with the Frobenius norm of the grafted optimizer's step (Agarwal et al. 2020; the
    grafts of Distributed Shampoo); its second moment is ``s[key]``."""
    if graft == "none":
        return u
    if graft == "sgd":
        base = g
    elif graft == "adagrad":
        s[key] = s[key] + g * g
        base = g / (np.sqrt(s[key]) + graft_eps)
    elif graft == "rmsprop":  # no bias correction
        s[key] = graft_b2 * s[key] + (1 - graft_b2) * g * g
        base = g / (np.sqrt(s[key]) + graft_eps)
    else:  # adam: the bias-corrected second moment, no momentum
        s[key] = graft_b2 * s[key] + (1 - graft_b2) * g * g
        base = g / (np.sqrt(s[key] / (1 - graft_b2**t)) + graft_eps)
    norm = np.linalg.norm(u)
    return u * (np.linalg.norm(base) / norm if norm > 0 else 0.0)


def numpy_eigenvalue_corrected_shampoo(
    lr,
    eps=1e-6,
    stat_decay=1.0,
    freq=1,
    block_size=None,
    max_dim=1024,
    graft="none",
    graft_eps=1e-8,
    graft_b2=0.999,
):
    """Eigenvalue-corrected Shampoo (George et al. 2018; Distributed Shampoo's
    ``EigenvalueCorrectedShampooPreconditionerConfig``): per block, ``L`` and ``R`` as in Shampoo,
    their eigenvectors refreshed on steps 1, 1 + f, ..., and Adam's (AdaGrad's at
    ``stat_decay = 1``) diagonal second moment ``D`` of the rotated gradient
    ``Q_L^T G Q_R``; ``u = Q_L [X / (sqrt(D / c) + eps)] Q_R^T``."""
    sd = stat_decay

    def acc(old, new):
        return old + new if sd == 1.0 else sd * old + (1 - sd) * new

    def init(params):
        state = {"t": np.zeros(())}
        for k, p in params.items():
            state[k + "/graft"] = np.zeros(p.shape)
            state[k + "/D"] = np.zeros(p.shape)  # blocks tile the matrix: D of each block in place
            if p.ndim == 2:
                for i, (r, c) in enumerate(_np_blocks(p.shape, block_size)):
                    m, n = r.stop - r.start, c.stop - c.start
                    state[f"{k}/L{i}"], state[f"{k}/R{i}"] = np.zeros((m, m)), np.zeros((n, n))
                    state[f"{k}/QL{i}"], state[f"{k}/QR{i}"] = np.eye(m), np.eye(n)
        return state

    def update(grads, state, params):
        s = {k: np.array(v) for k, v in state.items()}
        t = int(s["t"]) + 1
        refresh = (t - 1) % freq == 0
        c = 1.0 - sd**t if sd < 1.0 else 1.0
        out = {}
        for k, g in grads.items():
            d = s[k + "/D"]
            if g.ndim < 2:
                d[...] = acc(d, g * g)
                u = g / (np.sqrt(d / c) + eps)
            else:
                u = np.zeros_like(g)
                for i, b in enumerate(_np_blocks(g.shape, block_size)):
                    gb = g[b]
                    ql, qr = s[f"{k}/QL{i}"], s[f"{k}/QR{i}"]
                    if gb.shape[0] <= max_dim:
                        s[f"{k}/L{i}"] = acc(s[f"{k}/L{i}"], gb @ gb.T)
                        if refresh:
                            ql = s[f"{k}/QL{i}"] = np.linalg.eigh(s[f"{k}/L{i}"])[1]
                    if gb.shape[1] <= max_dim:
                        s[f"{k}/R{i}"] = acc(s[f"{k}/R{i}"], gb.T @ gb)
                        if refresh:
                            qr = s[f"{k}/QR{i}"] = np.linalg.eigh(s[f"{k}/R{i}"])[1]
                    x = ql.T @ gb @ qr  # the gradient in the eigenbasis (identity if a side is off)
                    d[b] = acc(d[b], x * x)
                    u[b] = ql @ (x / (np.sqrt(d[b] / c) + eps)) @ qr.T
            out[k] = -lr * _np_graft(graft, s, k + "/graft", g, u, t, graft_eps, graft_b2)
        s["t"] = np.asarray(float(t))
        return out, s

    return NumpyTransform(init, update)


def numpy_shampoo(
    lr,
    eps=1e-6,
    stat_decay=1.0,
    freq=1,
    block_size=None,
    max_dim=1024,
    graft="none",
    graft_eps=1e-8,
    graft_b2=0.999,
):
    def acc(old, new):
        return old + new if stat_decay == 1.0 else stat_decay * old + (1 - stat_decay) * new

    def init(params):
        state = {"t": np.zeros(())}
        for k, p in params.items():
            state[k + "/graft"] = np.zeros(p.shape)
            state[k + "/diag"] = np.zeros(p.shape)
            if p.ndim == 2:
                for i, (r, c) in enumerate(_np_blocks(p.shape, block_size)):
                    m, n = r.stop - r.start, c.stop - c.start
                    state[f"{k}/L{i}"], state[f"{k}/R{i}"] = np.zeros((m, m)), np.zeros((n, n))
                    state[f"{k}/PL{i}"], state[f"{k}/PR{i}"] = np.eye(m), np.eye(n)
        return state

    def update(grads, state, params):
        s = dict(state)
        t = int(s["t"]) + 1
        refresh = (t - 1) % freq == 0  # roots recomputed on steps 1, 1 + f, ...
        out = {}
        for k, g in grads.items():
            s[k + "/diag"] = acc(s[k + "/diag"], g * g)
            if g.ndim < 2:
                u = g / np.sqrt(s[k + "/diag"] + eps)
            else:
                u = np.zeros_like(g)
                for i, b in enumerate(_np_blocks(g.shape, block_size)):
                    gb = g[b]
                    on_l, on_r = gb.shape[0] <= max_dim, gb.shape[1] <= max_dim
                    p = 2 * (on_l + on_r)  # Algorithm 2: exponent 1/(2k)
                    ub = gb
                    if on_l:
                        s[f"{k}/L{i}"] = acc(s[f"{k}/L{i}"], gb @ gb.T)  # Alg. 1, line 5
                        if refresh:
                            s[f"{k}/PL{i}"] = _np_root(s[f"{k}/L{i}"], eps, p)
                        ub = s[f"{k}/PL{i}"] @ ub
                    if on_r:
                        s[f"{k}/R{i}"] = acc(s[f"{k}/R{i}"], gb.T @ gb)  # Alg. 1, line 6
                        if refresh:
                            s[f"{k}/PR{i}"] = _np_root(s[f"{k}/R{i}"], eps, p)
                        ub = ub @ s[f"{k}/PR{i}"]  # Alg. 1, line 7
                    if not (on_l or on_r):
                        ub = gb / np.sqrt(s[k + "/diag"][b] + eps)
                    u[b] = ub
            out[k] = -lr * _np_graft(graft, s, k + "/graft", g, u, t, graft_eps, graft_b2)
        s["t"] = np.asarray(float(t))
        return out, s

    return NumpyTransform(init, update)


def numpy_soap(lr, b1=0.95, b2=0.95, eps=1e-8, sb=None, freq=10, block_size=None, max_dim=10000):
    sb = b2 if sb is None else sb

    def init(params):
        state = {"t": np.zeros(())}
        for k, p in params.items():
            state[k + "/M"], state[k + "/V"] = np.zeros(p.shape), np.zeros(p.shape)
            if p.ndim == 2:
                for i, (r, c) in enumerate(_np_blocks(p.shape, block_size)):
                    m, n = r.stop - r.start, c.stop - c.start
                    state[f"{k}/L{i}"], state[f"{k}/R{i}"] = np.zeros((m, m)), np.zeros((n, n))
                    state[f"{k}/QL{i}"], state[f"{k}/QR{i}"] = np.eye(m), np.eye(n)
        return state

    def power_qr(stat, q, v, axis):  # Algorithm 4, with the authors' sorting
        order = np.argsort(-np.diag(q.T @ stat @ q), kind="stable")
        q_new, _ = np.linalg.qr(stat @ q[:, order])
        return q_new, np.take(v, order, axis=axis)

    def first_basis(s, k, i, gb):
        """Statistics from the first gradient; bases: eigenvectors, largest eigenvalue first."""
        if gb.shape[0] <= max_dim:
            s[f"{k}/L{i}"] = (1 - sb) * gb @ gb.T
            s[f"{k}/QL{i}"] = np.linalg.eigh(s[f"{k}/L{i}"])[1][:, ::-1]
        if gb.shape[1] <= max_dim:
            s[f"{k}/R{i}"] = (1 - sb) * gb.T @ gb
            s[f"{k}/QR{i}"] = np.linalg.eigh(s[f"{k}/R{i}"])[1][:, ::-1]

    def update(grads, state, params):
        s = dict(state)
        steps_before = int(s["t"])
        s["t"] = np.asarray(float(steps_before + 1))
        out = {}
        for k, g in grads.items():
            if steps_before == 0:  # first step: statistics and eigh bases only
                for i, b in enumerate(_np_blocks(g.shape, block_size) if g.ndim == 2 else []):
                    first_basis(s, k, i, g[b])
                out[k] = np.zeros_like(g)
                continue
            t = steps_before
            s[k + "/M"] = b1 * s[k + "/M"] + (1 - b1) * g  # Alg. 3, line 4
            step = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            if g.ndim < 2:  # plain Adam
                s[k + "/V"] = b2 * s[k + "/V"] + (1 - b2) * g * g
                out[k] = -step * s[k + "/M"] / (np.sqrt(s[k + "/V"]) + eps)
                continue
            u, v = np.zeros_like(g), s[k + "/V"].copy()
            for i, b in enumerate(_np_blocks(g.shape, block_size)):
                gb, mb = g[b], s[k + "/M"][b]
                on_l, on_r = gb.shape[0] <= max_dim, gb.shape[1] <= max_dim
                ql = s[f"{k}/QL{i}"] if on_l else np.eye(gb.shape[0])
                qr = s[f"{k}/QR{i}"] if on_r else np.eye(gb.shape[1])
                gp = ql.T @ gb @ qr  # line 3
                mp = ql.T @ mb @ qr  # line 5
                vb = b2 * v[b] + (1 - b2) * gp * gp  # line 6 (Adam's second moment)
                u[b] = -step * (ql @ (mp / (np.sqrt(vb) + eps)) @ qr.T)  # lines 6-8
                if on_l:
                    s[f"{k}/L{i}"] = sb * s[f"{k}/L{i}"] + (1 - sb) * gb @ gb.T  # line 9
                if on_r:
                    s[f"{k}/R{i}"] = sb * s[f"{k}/R{i}"] + (1 - sb) * gb.T @ gb  # line 10
                if t % freq == 0:  # lines 11-13
                    if on_l:
                        s[f"{k}/QL{i}"], vb = power_qr(s[f"{k}/L{i}"], s[f"{k}/QL{i}"], vb, 0)
                    if on_r:
                        s[f"{k}/QR{i}"], vb = power_qr(s[f"{k}/R{i}"], s[f"{k}/QR{i}"], vb, 1)
                v[b] = vb
            s[k + "/V"] = v
            out[k] = u
        return out, s

    return NumpyTransform(init, update)


# --- Prodigy, D-Adaptation and MADGRAD ------------------------------------------------------------


class NumpyProdigy:
    def __init__(self, lr=1.0, b1=0.9, b2=0.999, eps=1e-8, d0=1e-6, wd=0.0, bias_correction=True):
        self.lr, self.b1, self.b2, self.eps, self.d0, self.wd = lr, b1, b2, eps, d0, wd
        self.beta3, self.bc = np.sqrt(b2), bias_correction

    def init(self, params):
        z = {k: np.zeros(np.shape(v)) for k, v in params.items()}
        x0 = {k: np.asarray(v, np.float64).copy() for k, v in params.items()}
        return {"m": dict(z), "v": dict(z), "s": dict(z), "x0": x0, "d": self.d0, "r": 0.0, "t": 0}

    def update(self, g, st, x):
        g = {k: np.asarray(v) for k, v in g.items()}
        x = {k: np.asarray(v) for k, v in x.items()}
        t, d, b1, b2 = st["t"] + 1, st["d"], self.b1, self.b2
        eta = d * self.lr * (np.sqrt(1 - b2**t) / (1 - b1**t) if self.bc else 1.0)
        r = self.beta3 * st["r"] + (d / self.d0) * eta * sum(
            float(np.sum(g[k] * (st["x0"][k] - x[k]))) for k in g
        )
        m = {k: b1 * st["m"][k] + (1 - b1) * d * g[k] for k in g}
        v = {k: b2 * st["v"][k] + (1 - b2) * d**2 * g[k] ** 2 for k in g}
        s = {k: self.beta3 * st["s"][k] + (d / self.d0) * eta * g[k] for k in g}
        l1 = sum(float(np.sum(np.abs(s[k]))) for k in g)
        d_new = max(d, r / l1) if l1 > 0 else d
        steps = {
            k: jnp.asarray(-eta * (m[k] / (np.sqrt(v[k]) + d_new * self.eps) + self.wd * x[k]))
            for k in g
        }
        return steps, {**st, "m": m, "v": v, "s": s, "d": d_new, "r": r, "t": t}


class NumpyDadaptAdam:
    def __init__(self, lr=1.0, b1=0.9, b2=0.999, eps=1e-8, d0=1e-6, wd=0.0, bias_correction=True):
        self.lr, self.b1, self.b2, self.eps, self.d0, self.wd = lr, b1, b2, eps, d0, wd
        self.bc = bias_correction

    def init(self, params):
        z = {k: np.zeros(np.shape(v)) for k, v in params.items()}
        return {"m": dict(z), "v": dict(z), "s": dict(z), "d": self.d0, "r": 0.0, "t": 0}

    def update(self, g, st, x):
        g = {k: np.asarray(v) for k, v in g.items()}
        x = {k: np.asarray(v) for k, v in x.items()}
        t, d, b1, b2 = st["t"] + 1, st["d"], self.b1, self.b2
        sb2 = np.sqrt(b2)
        eta = d * self.lr * (np.sqrt(1 - b2**t) / (1 - b1**t) if self.bc else 1.0)
        inner = sum(float(np.sum(g[k] * st["s"][k] / (np.sqrt(st["v"][k]) + self.eps))) for k in g)
        r = sb2 * st["r"] + (1 - sb2) * eta * inner
        m = {k: b1 * st["m"][k] + (1 - b1) * eta * g[k] for k in g}
        v = {k: b2 * st["v"][k] + (1 - b2) * g[k] ** 2 for k in g}
        s = {k: sb2 * st["s"][k] + (1 - sb2) * eta * g[k] for k in g}
        l1 = sum(float(np.sum(np.abs(s[k]))) for k in g)
        d_new = max(d, r / ((1 - sb2) * l1)) if l1 > 0 else d
        steps = {
            k: jnp.asarray(-(m[k] / (np.sqrt(v[k]) + self.eps)) - self.wd * eta * x[k]) for k in g
        }
        return steps, {**st, "m": m, "v": v, "s": s, "d": d_new, "r": r, "t": t}


class NumpyMadgrad:
    def __init__(self, lr, momentum=0.9, weight_decay=0.0, eps=1e-6):
        self.lr, self.momentum, self.wd, self.eps = lr, momentum, weight_decay, eps

    def init(self, params):
        x0 = {k: np.array(v, np.float64) for k, v in params.items()}
        zeros = {k: np.zeros(np.shape(v)) for k, v in params.items()}
        return {"k": 0, "x0": x0, "s": zeros, "G": dict(zeros)}

    def update(self, g, st, x):
        x = {k: np.asarray(v) for k, v in x.items()}
        g = {k: np.asarray(v) + self.wd * x[k] for k, v in g.items()}
        lr = self.lr(st["k"]) if callable(self.lr) else self.lr
        lam = (float(lr) + self.eps) * np.sqrt(st["k"] + 1)
        s = {k: st["s"][k] + lam * g[k] for k in g}
        big_g = {k: st["G"][k] + lam * g[k] ** 2 for k in g}
        ck = 1 - self.momentum
        out = {}
        for k in g:
            z = st["x0"][k] - s[k] / (np.cbrt(big_g[k]) + self.eps)
            out[k] = jnp.asarray((1 - ck) * x[k] + ck * z - x[k])
        return out, {**st, "k": st["k"] + 1, "s": s, "G": big_g}


def squares_plus_params():
    return optix.stateless(lambda g, p: jax.tree.map(lambda x, y: x * x + 0.1 * jnp.abs(y), g, p))


# --- Sophia: an objective with a diagonal Hessian --------------------------------------------------

SEPARABLE_CURVATURE = {
    k: 0.5 + np.arange(int(np.prod(s)), dtype=np.float64).reshape(s) / 4 for k, s in SHAPES.items()
}


def separable_objective(p):
    return sum(
        jnp.sum(SEPARABLE_CURVATURE[k] * p[k] ** 2 + 0.1 * p[k] ** 4) for k in SEPARABLE_CURVATURE
    )


# --- PSGD Kron (psgd_jax's ``kron``, Xi-Lin Li 2018) -------------------------------------------


def _np_norm_lower_bound(a):
    """psgd's lower bound of a Hermitian matrix's spectral norm, both of its branches."""
    big = np.max(np.abs(a))
    if big == 0:
        return 0.0
    a = a / big
    sq = a * a
    col, row = sq.sum(axis=0), sq.sum(axis=1)
    i, j = int(np.argmax(col)), int(np.argmax(row))
    if col[i] > row[j]:
        x = a[:, i] @ a
        return big * np.linalg.norm((x / np.linalg.norm(x)) @ a.T)
    x = a @ a[j, :]
    return big * np.linalg.norm(a.T @ (x / np.linalg.norm(x)))


def _np_mode(x, axis, m):
    """``x`` with the matrix ``m`` applied along ``axis`` (``x_(axis) <- m @ x_(axis)``)."""
    return np.moveaxis(np.tensordot(m, x, axes=([1], [axis])), 0, axis)


def _np_psgd_fit(qs, g, v, lr):
    """One preconditioner update of psgd_jax's ``kron`` (``_update_precond`` with ``_conjB``)."""
    tiny = np.finfo(np.float64).tiny
    if g.ndim == 0:
        (q,) = qs
        a, b = q * g, v / q
        t1, t2 = a * a, b * b
        return [q - lr * (t1 - t2) * q / (np.abs(t1 + t2) + tiny)]
    a, b = g, v
    for i, q in enumerate(qs):
        if q.ndim == 1:
            shape = [1] * g.ndim
            shape[i] = -1
            a, b = a * q.reshape(shape), b / q.reshape(shape)
        else:
            a = _np_mode(a, i, q)
            # B = V along axis i times inv(Q)^T: X @ inv(Q) on the unfolding
            b = _np_mode(b, i, np.linalg.inv(q).T)
    out = []
    for i, q in enumerate(qs):
        others = [k for k in range(g.ndim) if k != i]
        if q.ndim == 1:
            t1 = np.sum(a * a, axis=tuple(others))
            t2 = np.sum(b * b, axis=tuple(others))
            out.append(q - lr * (t1 - t2) * q / (np.max(np.abs(t1 + t2)) + tiny))
        else:
            t1 = np.tensordot(a, a, axes=(others, others))
            t2 = np.tensordot(b, b, axes=(others, others))
            step = np.triu(t1 - t2) * lr / (_np_norm_lower_bound(t1 + t2) + tiny)
            out.append(q - step @ q)
    return out


def _np_psgd_precond(qs, g):
    if g.ndim == 0:
        return qs[0] * qs[0] * g
    u = g
    for i, q in enumerate(qs):
        if q.ndim == 1:
            shape = [1] * g.ndim
            shape[i] = -1
            u = u * (q * q).reshape(shape)
        else:
            u = _np_mode(u, i, q.T @ q)
    return u


def _np_balance(qs):
    if len(qs) < 2:
        return qs
    norms = np.array([np.max(np.abs(q)) for q in qs])
    gmean = np.prod(norms) ** (1 / len(qs))
    return [q * (gmean / n) for q, n in zip(qs, norms, strict=True)]


class NumpyPsgdKron:
    """psgd_jax's ``kron`` (``scale_by_kron`` + decoupled decay + learning rate) in NumPy, with
    the preconditioner updated every ``every`` steps and rebalanced every 100 steps (optix's
    deterministic schedule). The probes are drawn in JAX with ``optix.noise_key(PRNGKey(seed), t,
    i)`` (the documented draw) and handed to the NumPy step with the gradients."""

    def __init__(
        self,
        lr,
        b1=0.9,
        weight_decay=0.0,
        mask=None,
        *,
        precond_lr=0.1,
        init_scale=1.0,
        max_size=8192,
        min_ndim=2,
        every=1,
        trust=1.5,
        seed=0,
    ):
        self.lr, self.b1, self.wd, self.mask = lr, b1, weight_decay, mask
        self.plr, self.init_scale, self.max_size, self.min_ndim = (
            precond_lr,
            init_scale,
            max_size,
            min_ndim,
        )
        self.every, self.trust, self.key = every, trust, jax.random.PRNGKey(seed)

    def _init_np(self, params):
        state = {"t": np.zeros(())}
        for k, p in params.items():
            state[k + "/mu"] = np.zeros(p.shape)
            if p.ndim == 0:
                state[k + "/Q0"] = np.asarray(self.init_scale, np.float64)
                continue
            scale = self.init_scale ** (1 / p.ndim)
            for i, n in enumerate(p.shape):
                diag = n == 1 or n > self.max_size or p.ndim < self.min_ndim
                state[f"{k}/Q{i}"] = scale * (np.ones(n) if diag else np.eye(n))
        return state

    def init(self, params):
        return jax.tree.map(jnp.asarray, self._init_np(jax.tree.map(np.asarray, params)))

    def _update_np(self, grads, probes, state, params):
        s = dict(state)
        t = int(s["t"]) + 1
        mask = self.mask(params) if self.mask is not None else {k: True for k in grads}
        out = {}
        for k, g in grads.items():
            n_q = max(g.ndim, 1)
            qs = [s[f"{k}/Q{i}"] for i in range(n_q)]
            if self.b1 > 0:
                s[k + "/mu"] = self.b1 * s[k + "/mu"] + (1 - self.b1) * g
                m = s[k + "/mu"] / (1 - self.b1**t)
            else:
                m = g
            if (t - 1) % self.every == 0:
                if t % 100 == 0:
                    qs = _np_balance(qs)
                qs = _np_psgd_fit(qs, m, probes[k], self.plr)
            u = _np_psgd_precond(qs, m)
            if self.trust is not None:
                x = u / self.trust
                u = self.trust * (0.1 * np.sign(x) * np.log(np.abs(x) + 1) + 0.9 * np.tanh(x))
            if self.wd and mask[k]:
                u = u + self.wd * params[k]
            out[k] = -self.lr * u
            for i, q in enumerate(qs):
                s[f"{k}/Q{i}"] = q
        s["t"] = np.asarray(float(t))
        return out, s

    def update(self, grads, state, params=None):
        step = state["t"].astype(jnp.int32)
        leaves, treedef = jax.tree.flatten(grads)
        probes = treedef.unflatten(
            [
                jax.random.normal(optix.noise_key(self.key, step, i), g.shape, g.dtype)
                for i, g in enumerate(leaves)
            ]
        )
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), (grads, state))

        def call(g, v, s, p):
            as_np = lambda t: jax.tree.map(lambda x: np.array(x, np.float64), t)  # noqa: E731
            u, s = self._update_np(as_np(g), as_np(v), as_np(s), as_np(p))
            return jax.tree.map(np.asarray, u), jax.tree.map(np.asarray, s)

        return jax.pure_callback(call, shapes, grads, probes, state, params)
