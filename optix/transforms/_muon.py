"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for matrix-shaped weights."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._hyperparams import Hyperparams, HyperparamState, register_rules
from optix._keypath import path_str

# Jordan's quintic coefficients (a, b, c), chosen to maximise the slope at zero; also the defaults
# of torch.optim.Muon and optax.contrib.muon.
NS_COEFFS = (3.4445, -4.7750, 2.0315)

Coeffs = tuple[float, float, float] | Sequence[tuple[float, float, float]]


def _coeff_steps(coeffs: Coeffs, steps: int) -> list[tuple[float, float, float]]:
    """One ``(a, b, c)`` per step: a single triple repeated, or a list of ``steps`` triples."""
    _validate.check_int("ns_steps", steps, 1)
    flat: list[Any] = list(coeffs)
    if len(flat) == 3 and all(isinstance(c, int | float) for c in flat):
        a, b, c = (float(x) for x in flat)
        return [(a, b, c)] * steps
    triples = [tuple(float(x) for x in t) for t in flat]
    if len(triples) != steps or any(len(t) != 3 for t in triples):
        raise ValueError(
            f"`ns_coeffs` must be one (a, b, c) triple or {steps} of them (one per step), "
            f"got {coeffs!r}"
        )
    return triples  # type: ignore[return-value]


def newton_schulz(
    x: jax.Array,
    steps: int = 5,
    coeffs: Coeffs = NS_COEFFS,
    eps: float | jax.Array = 1e-7,
    *,
    eps_mode: Literal["clamp", "add"] = "clamp",
) -> jax.Array:
    r"""Approximately orthogonalise a matrix: ``x = U S V^H -> U S' V^H`` with ``S'`` near 1.

    .. math::
        X_0 = \frac{X}{\max(\|X\|_F, \epsilon)}, \qquad
        A_k = X_k X_k^H, \qquad X_{k+1} = a X_k + (b A_k + c A_k^2) X_k

    run on the wide orientation (``x`` is transposed when it has more rows than columns, which
    leaves the result unchanged since the iteration commutes with transposition). Dividing by the
    Frobenius norm bounds the spectral norm by 1. The quintic coefficients push every singular
    value into roughly [0.7, 1.2] in five steps rather than converging to exactly 1. For a
    complex ``x``, ``X^H`` is the conjugate transpose (``X^T`` for a real one) and the result is
    ``U S' V^H``; a matrix with no elements comes back as it is.

    Args:
      x: a 2-D real or complex array; math runs in its dtype (upcast it first for low precision).
      steps: number of iterations.
      coeffs: one ``(a, b, c)`` triple for every step, or a list of ``steps`` triples.
      eps: guards the normalisation of an all-zero ``x``.
      eps_mode: ``"clamp"`` divides by ``max(||x||, eps)`` (torch.optim.Muon, Jordan's code);
        ``"add"`` divides by ``||x|| + eps`` (optax.contrib.muon).

    Example:
      >>> import jax.numpy as jnp
      >>> from optix.transforms._muon import newton_schulz
      >>> o = newton_schulz(jnp.array([[3.0, 0.0], [0.0, 0.5]]), steps=10)
      >>> bool(jnp.all(jnp.abs(jnp.diag(o) - 1) < 0.35))
      True

    Reference: Jordan et al., "Muon: an optimizer for hidden layers in neural networks", 2024.
    """
    if x.ndim != 2:
        raise ValueError(f"`newton_schulz` needs a 2-D array, got shape {x.shape}")
    triples = _coeff_steps(coeffs, steps)
    x = _tree.unsplit(x)  # whole matrices when ZeRO splits the state over explicit mesh axes
    if x.size == 0:
        return x
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    norm = jnp.sqrt(jnp.sum(_tree.abs_sq(x)))
    denom = jnp.maximum(norm, eps) if eps_mode == "clamp" else norm + eps
    x = x / denom.astype(x.dtype)
    for a, b, c in triples:
        gram = x @ jnp.conj(x).T  # X X^H (jnp.conj is the identity on real arrays)
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if tall else x


def matrix_view(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """The 2-D shape a weight of ``shape`` is orthogonalised as: ``(rest, fan_out)`` for the
    ``"in_out"`` layout (JAX/flax: ``(in, out)``, conv ``(..., in, out)``), ``(fan_out, rest)``
    for ``"out_in"`` (torch: ``(out, in)``, conv ``(out, in, ...)``)."""
    if layout == "in_out":
        return math.prod(shape[:-1]), shape[-1]
    return shape[0], math.prod(shape[1:])


class ScaleByMuonState(NamedTuple):
    """State of :func:`scale_by_muon`: the hyperparameters and the momentum buffer."""

    hyperparams: HyperparamState  # beta, eps (and rms_scale with scale_mode="match_rms_adamw")
    mu: Updates  # momentum buffer, an EMA of the gradients


register_rules(ScaleByMuonState, beta=_validate.check_unit_interval)


def scale_by_muon(
    beta: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-7,
    *,
    ns_steps: int = 5,
    ns_coeffs: Coeffs = NS_COEFFS,
    nesterov: bool = True,
    bias_correction: bool = False,
    eps_mode: Literal["clamp", "add"] = "clamp",
    layout: Literal["in_out", "out_in"] = "in_out",
    scale_mode: Literal["original", "match_rms_adamw", "none"] = "original",
    rms_scale: ScalarOrSchedule = 0.2,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Orthogonalise the momentum of each matrix-shaped leaf with Newton-Schulz (Muon).

    .. math::
        B_t = \beta B_{t-1} + (1-\beta) G_t, \quad
        \tilde B_t = \begin{cases}(1-\beta) G_t + \beta B_t & \text{nesterov}\\
        B_t & \text{otherwise}\end{cases}, \quad
        u_t = s \cdot \mathrm{NS}_k(\tilde B_t)

    with ``NS_k`` :func:`newton_schulz`. Complex leaves are orthogonalised with the conjugate
    transpose (``U S V^H -> U S' V^H``). Leaves of 3 or more dimensions (conv kernels) are
    orthogonalised as a 2-D view (see ``layout``) and reshaped back. Every leaf must have
    ``ndim >= 2``: :func:`optix.muon` routes the others to AdamW.

    Conventions: the momentum is the EMA of Jordan's code and torch.optim.Muon, with no bias
    correction by default; ``bias_correction=True`` is optax.contrib.muon's form (``B_t`` divided
    by ``1-beta^t``; with Nesterov, ``beta B_t / (1-beta^{t+1}) + (1-beta) G_t / (1-beta^t)``).

    Args:
      beta: momentum decay in [0, 1).
      eps: guards the normalisation inside Newton-Schulz (see ``eps_mode``).
      ns_steps: Newton-Schulz iterations.
      ns_coeffs: one ``(a, b, c)`` triple, or ``ns_steps`` of them.
      nesterov: use the Nesterov look-ahead (default, as in torch and optax).
      bias_correction: optax's bias-corrected momentum (see above).
      eps_mode: ``"clamp"``: ``X / max(||X||, eps)`` (torch); ``"add"``: ``X / (||X|| + eps)``
        (optax).
      layout: which axis is ``fan_out``. ``"in_out"`` (default; JAX/flax kernels ``(in, out)`` and
        conv ``(..., in, out)``) views a leaf as ``(rest, fan_out)``; ``"out_in"`` (torch
        ``(out, in)``, conv ``(out, in, kh, kw)``) as ``(fan_out, rest)``.
      scale_mode: ``s``. ``"original"``: ``sqrt(max(1, fan_out / fan_in))`` (Jordan; torch's
        default; optax's default for ``(in, out)`` weights); ``"match_rms_adamw"``:
        ``rms_scale * sqrt(max(fan_in, fan_out))`` (Liu et al. 2025; torch's option, optax's
        ``consistent_rms``); ``"none"``: 1.
      rms_scale: the factor of ``"match_rms_adamw"`` (0.2 matches AdamW's update RMS).
      mu_dtype: dtype of the momentum buffer; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.scale_by_muon(), optix.scale_lr(0.02))
      >>> state = tx.init({"w": jnp.zeros((4, 3))})

    Reference: Jordan et al., "Muon: an optimizer for hidden layers in neural networks", 2024
    (https://kellerjordan.github.io/posts/muon/); Liu et al., "Muon is scalable for LLM
    training", 2025 (the RMS-matching scale).
    """
    _validate.check_unit_interval("beta", beta)
    _validate.check_nonnegative("eps", eps)
    _coeff_steps(ns_coeffs, ns_steps)
    _tree.check_state_dtype("mu_dtype", mu_dtype)
    if eps_mode not in ("clamp", "add"):
        raise ValueError(f"`eps_mode` must be 'clamp' or 'add', got {eps_mode!r}")
    if layout not in ("in_out", "out_in"):
        raise ValueError(f"`layout` must be 'in_out' or 'out_in', got {layout!r}")
    if scale_mode not in ("original", "match_rms_adamw", "none"):
        raise ValueError(
            f"`scale_mode` must be 'original', 'match_rms_adamw' or 'none', got {scale_mode!r}"
        )
    extra = {}
    if scale_mode == "match_rms_adamw":
        _validate.check_nonnegative("rms_scale", rms_scale)
        extra["rms_scale"] = rms_scale
    spec = Hyperparams(beta=beta, eps=eps, **extra)

    def check_leaves(params):
        _validate.check_float_leaves(params, "`scale_by_muon` params")
        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            if leaf.ndim < 2:
                raise ValueError(
                    f"`scale_by_muon` needs leaves with ndim >= 2; leaf '{path_str(path)}' has "
                    f"shape {leaf.shape}. Use `optix.muon`, which sends such leaves to AdamW."
                )

    def init(params):
        check_leaves(params)
        return ScaleByMuonState(spec.init(), _tree.moments_like(params, mu_dtype, name="mu_dtype"))

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_muon")
        check_leaves(updates)
        hp, hyperparams = spec.step(state.hyperparams)
        b = hp["beta"]
        t = hyperparams.count
        bc_now = _tree.bias_correction(b, t) if bias_correction else 1
        bc_next = _tree.bias_correction(b, t + 1) if bias_correction else 1

        def leaf(g, m):
            gc = _tree.upcast(g)
            m_new = b * m + (1 - b) * gc
            if nesterov:
                x = b * m_new / bc_next + (1 - b) * gc / bc_now
            else:
                x = m_new / bc_now
            rows, cols = matrix_view(g.shape, layout)
            o = newton_schulz(
                x.reshape(rows, cols), ns_steps, ns_coeffs, hp["eps"], eps_mode=eps_mode
            )
            fan_out, fan_in = (cols, rows) if layout == "in_out" else (rows, cols)
            if o.size == 0:  # nothing to scale, and ``fan_in`` may be 0
                pass
            elif scale_mode == "original":
                o = o * math.sqrt(max(1.0, fan_out / fan_in))
            elif scale_mode == "match_rms_adamw":
                o = o * (hp["rms_scale"] * math.sqrt(max(fan_in, fan_out)))
            return o.reshape(g.shape).astype(g.dtype), m_new.astype(m.dtype)

        updates, mu = _tree.map_leaves(leaf, updates, state.mu, n_out=2)
        return updates, ScaleByMuonState(hyperparams, mu)

    return GradientTransformation(init, update)
