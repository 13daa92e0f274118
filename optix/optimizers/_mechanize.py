r"""Mechanic: learn the scale of any optimizer's steps online.

Reference: Cutkosky, Defazio & Mehta, `Mechanic: a learning rate tuner
<https://arxiv.org/abs/2306.00144>`_, NeurIPS 2023.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._chain import caller
from optix._chain import check_transform
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import Positive
from optix.toolkit import transform


def _sum(tree: Any, fn: Any) -> jax.Array:
    dt = hyperparam_dtype()
    parts = jax.tree.leaves(_tree.map_leaves(lambda *xs: jnp.sum(fn(*xs)).astype(dt), *tree))
    return sum(parts, jnp.zeros([], dt))


def _norm(tree: Any) -> jax.Array:
    return jnp.sqrt(_sum((tree,), lambda x: _tree.abs_sq(_tree.upcast(x))))


class MechanizeState(NamedTuple):
    """State of :func:`mechanize`: the base optimizer's state and the tuner's statistics."""

    hyperparams: HyperparamState  # weight_decay, eps, s_init; count is t
    inner: OptState  # the base optimizer's state
    params0: Params  # x_ref, the params at the first update
    r: jax.Array  # (n,) discounted reward of each tuner
    m: jax.Array  # (n,) running max of |h|
    v: jax.Array  # (n,) discounted sum of h^2
    s: jax.Array  # (n,) scale proposed by each tuner; the step scale is their sum


@transform(MechanizeState)
def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: NonNegative = 1e-2,
    eps: Positive = 1e-8,
    s_init: Positive = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    r"""Mechanic: wrap an optimizer and learn, online, how much to scale its steps.

    With ``u_t`` the base optimizer's step, ``n = num_betas`` tuners with decays
    ``beta_i = 1 - 10^{-i}``, and ``S_t = sum_i s_{t,i}``:

    .. math::
        \Delta_t = \frac{x_t - x_{ref}}{S_t + \epsilon}, \quad
        \tilde g_t = g_t + \lambda S_t \frac{\lVert g_t \rVert}{\lVert x_t \rVert + \epsilon} x_t,
        \quad h_t = \langle \tilde g_t, \Delta_t \rangle,

    .. math::
        m_{t+1} = \max(\beta m_t, |h_t| + \epsilon), \quad
        v_{t+1} = \beta^2 v_t + h_t^2, \quad
        r_{t+1} = \beta r_t - s_t \,\mathrm{clip}(h_t, -m_t, m_t),

    .. math::
        s_{t+1} = \frac{\tfrac{s_{init}}{n} m_{t+1} + \max(r_{t+1}, 0)}{\sqrt{v_{t+1}} + \epsilon},
        \quad x_{t+1} = x_{ref} + S_{t+1} (\Delta_t + u_t)

    per tuner (``beta``, ``m``, ``v``, ``r``, ``s`` are length-``n`` vectors), with ``x_ref`` the
    params of the first update and all norms over all leaves together. The weight decay ``lambda``
    only enters the tuner's gradient, never the base optimizer's. The result is a step
    (``x_{t+1} - x_t``), like the base optimizer's, so keep the base's learning rate (1, or a
    schedule peaking at 1) and let Mechanic find its scale. Extra ``update`` keywords reach the
    base optimizer. Matches ``optax.contrib.mechanize`` (the authors' implementation, with the
    clipping of ``h`` added after the paper).

    Args:
      base_optimizer: any gradient transformation producing steps (an optix or optax optimizer).
      weight_decay: ``lambda`` >= 0 of the tuner (not of the base optimizer).
      eps: > 0, added to denominators and to ``|h|``.
      s_init: > 0, the initial scale of each tuner and its wealth's floor.
      num_betas: the number ``n`` >= 1 of tuners.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.mechanize(optix.adam(1.0))
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
      >>> params = optix.apply_updates(params, updates)

    Reference: Cutkosky, Defazio & Mehta, `Mechanic: a learning rate tuner
    <https://arxiv.org/abs/2306.00144>`_, NeurIPS 2023.
    """
    check_transform(base_optimizer, "`base_optimizer`")
    _validate.check_int("num_betas", num_betas, minimum=1)
    spec = Hyperparams(weight_decay=weight_decay, eps=eps, s_init=s_init)
    call_base = caller(base_optimizer)

    def init(params):
        _validate.check_float_leaves(params, "`mechanize` params")
        _validate.check_real_leaves(params, "mechanize", "the tuner uses real inner products")
        hyperparams = spec.init()
        dt = hyperparam_dtype()
        zeros = jnp.zeros([num_betas], dt)
        s0 = jnp.asarray(spec.step(hyperparams)[0].s_init, dt)
        s = jnp.full([num_betas], s0, dt)
        inner = base_optimizer.init(params)
        return MechanizeState(
            hyperparams, inner, jax.tree.map(jnp.copy, params), zeros, zeros.copy(), zeros.copy(), s
        )

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "mechanize")
        _validate.check_float_leaves(updates, "`mechanize` updates")
        _validate.check_matches_params(updates, params)
        steps, inner = call_base(updates, state.inner, params, extra)
        h, hyperparams = spec.step(state.hyperparams)
        eps_, dt = h.eps, hyperparam_dtype()
        first = h.t == 1
        x_ref = jax.tree.map(lambda p, p0: _tree.where(first, p, p0), params, state.params0)
        scale = jnp.sum(state.s)
        # Per-leaf passes between sums over every leaf (the tuner's h_t, then the new scale), and
        # each reads the params: not leafwise's one (g, *state) pass, so the casts are here.
        decay = h.weight_decay * scale * _norm(updates) / (_norm(params) + eps_)

        def direction(x, x0):
            return (_tree.upcast(x) - _tree.upcast(x0)) / (scale + eps_)

        delta = _tree.map_leaves(direction, params, x_ref)
        h_t = _sum(
            (updates, params, delta),
            lambda g, x, d: (_tree.upcast(g) + decay * _tree.upcast(x)) * d,
        )
        betas = 1 - jnp.asarray(0.1, dt) ** jnp.arange(1, num_betas + 1, dtype=dt)
        clipped = jnp.clip(h_t, -state.m, state.m)
        m = jnp.maximum(betas * state.m, jnp.abs(h_t) + eps_)
        v = betas**2 * state.v + h_t**2
        r = betas * state.r - clipped * state.s
        wealth = h.s_init / num_betas * m + jnp.maximum(r, 0)
        s = wealth / (_tree.sqrt_flat_at_zero(v) + eps_)
        new_scale = jnp.sum(s)

        def step(d, u, x0, x):
            x_new = _tree.upcast(x0) + new_scale * (d + _tree.upcast(u))
            return (x_new - _tree.upcast(x)).astype(u.dtype)

        out = _tree.map_leaves(step, delta, steps, x_ref, params)
        return out, MechanizeState(hyperparams, inner, x_ref, r, m, v, s)

    return GradientTransformation(init, update)
