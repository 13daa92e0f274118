r"""Layer-wise grafting inside Shampoo: each matrix's preconditioned step takes the norm of a
simpler optimizer's step on the same gradient (Agarwal et al. 2020, as Distributed Shampoo does).

.. math:: u \leftarrow u \, \frac{\|b(g)\|_F}{\|u\|_F}

with the grafted direction ``b(g)``: ``g`` (SGD), ``g / (\sqrt{\sum_s g_s^2} + \epsilon)``
(AdaGrad), ``g / (\sqrt{v_t} + \epsilon)`` with ``v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2``
(RMSprop, no bias correction) or ``g / (\sqrt{v_t / (1 - \beta_2^t)} + \epsilon)`` (Adam, its
second moment only).

Reference: Agarwal, Anil, Hazan, Koren & Zhang, `Disentangling adaptive gradient methods from
learning rates <https://arxiv.org/abs/2002.11803>`_, 2020; Shi et al., `A distributed
data-parallel PyTorch implementation of the distributed Shampoo optimizer
<https://arxiv.org/abs/2309.06497>`_, 2023 (its SGD, AdaGrad, RMSprop and Adam grafting).
"""

from __future__ import annotations

from typing import Any
from typing import Literal

import jax
import jax.numpy as jnp

from optix import _tree
from optix.transforms._matrix_spec import MatrixLayout

Graft = Literal["none", "sgd", "adagrad", "rmsprop", "adam"]
GRAFTS = ("none", "sgd", "adagrad", "rmsprop", "adam")
_STATEFUL = ("adagrad", "rmsprop", "adam")  # the grafts that keep a second moment per leaf


def check_graft(graft: str) -> None:
    if graft not in GRAFTS:
        raise ValueError(f"`graft` must be one of {', '.join(map(repr, GRAFTS))}, got {graft!r}")


def graft_hyperparams(graft: str, graft_eps: Any, graft_b2: Any) -> dict[str, Any]:
    """The grafting hyperparameters the state holds for ``graft`` (only those it uses)."""
    out = {}
    if graft in _STATEFUL:
        out["graft_eps"] = graft_eps
    if graft in ("rmsprop", "adam"):
        out["graft_b2"] = graft_b2
    return out


def graft_state(params: Any, graft: str) -> Any:
    """The grafting second moment of each leaf (zeros), or None for a graft without one."""
    return _tree.moments_like(params) if graft in _STATEFUL else None


def _norm_to(u: jax.Array, base: jax.Array, axes: tuple[int, int] | None) -> jax.Array:
    """``u`` times ``||base|| / ||u||`` (over ``axes``; 0 where ``u`` is 0)."""
    keep = axes is not None
    u_norm = jnp.sqrt(jnp.sum(u * u, axis=axes, keepdims=keep))
    ratio = jnp.sqrt(jnp.sum(base * base, axis=axes, keepdims=keep))
    return u * (ratio / jnp.where(u_norm > 0, u_norm, 1))


def grafted(
    graft: str, u: jax.Array, g: jax.Array, v: Any, h: Any, lay: MatrixLayout | None
) -> tuple[jax.Array, Any]:
    """``u`` (a leaf's preconditioned step, compute dtype) rescaled to the norm of ``graft``'s
    step on the gradient ``g``, each matrix of a stack ``lay`` on its own; and the new second
    moment (``v``, None for SGD). ``h`` holds ``graft_eps``, ``graft_b2`` and the step ``t``."""
    gc = _tree.upcast(g)
    v_new = v
    if graft == "sgd":
        base = gc
    elif graft == "adagrad":
        v_new = v + gc * gc
        base = gc / (jnp.sqrt(v_new) + h.graft_eps)
    else:
        v_new = h.graft_b2 * v + (1 - h.graft_b2) * gc * gc
        v_hat = v_new / _tree.bias_correction(h.graft_b2, h.t) if graft == "adam" else v_new
        base = gc / (jnp.sqrt(v_hat) + h.graft_eps)
    if lay is not None and lay.stacked:  # each matrix of a stack on its own
        u = lay.from_stack(_norm_to(lay.to_stack(u), lay.to_stack(base), (-2, -1)))
    else:
        u = _norm_to(u, base, None)
    return u, (None if v is None else v_new.astype(v.dtype))


def graft_leaves(
    graft: str, updates: Any, preconditioned: Any, layouts: Any, moments: Any, h: Any
) -> tuple[Any, Any]:
    """Every leaf's preconditioned step (compute dtype) grafted with :func:`grafted` (left as it is
    for ``"none"``) and cast to its gradient's dtype; and the new second moments (None for a graft
    without them)."""

    def leaf(g: jax.Array, u: jax.Array, lay: Any, v: Any = None) -> tuple[jax.Array, Any]:
        if graft != "none":
            u, v = grafted(graft, u, g, v, h, lay)
        return u.astype(g.dtype), v

    if moments is None:
        direction = lambda g, u, lay: leaf(g, u, lay)[0]  # noqa: E731
        return _tree.map_leaves(direction, updates, preconditioned, layouts), None
    return _tree.map_leaves(leaf, updates, preconditioned, layouts, moments, n_out=2)
