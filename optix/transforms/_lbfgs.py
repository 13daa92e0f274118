"""L-BFGS preconditioning: the two-loop recursion over a ring buffer of curvature pairs."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree, _validate
from optix._base import GradientTransformation, Params, Updates
from optix._hyperparams import Hyperparams, HyperparamState, hyperparam_dtype


def tree_inner(a: Any, b: Any) -> jax.Array:
    """``Re <a, b> = Re sum(conj(a) * b)`` over all leaves, in the hyperparameter precision (or
    wider). Complex leaves count as pairs of real coordinates."""
    dtype = hyperparam_dtype()
    total = jnp.zeros([], dtype)
    with jax.numpy_dtype_promotion("standard"):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            x, y = _tree.upcast(x), _tree.upcast(y)
            part = jnp.real(jnp.sum(jnp.conj(x) * y)) if jnp.iscomplexobj(x) else jnp.sum(x * y)
            total = total + part
    return total


def _at(stacked: Any, index: jax.Array) -> Any:
    return jax.tree.map(lambda x: x[index], stacked)


class ScaleByLbfgsState(NamedTuple):
    """State of :func:`scale_by_lbfgs`.

    The memory holds up to ``memory_size`` pairs ``s_i = x_{i+1} - x_i``, ``y_i = g_{i+1} - g_i``
    stacked along a leading axis of each leaf, with ``rho_i = 1 / (s_i . y_i)`` (0 marks an empty
    slot). ``head`` is the slot the next accepted pair is written to, so the newest pair is at
    ``head - 1`` (mod ``memory_size``).
    """

    hyperparams: HyperparamState  # count only: the number of updates made
    prev_params: Params  # x_{k-1}
    prev_updates: Updates  # g_{k-1}
    s_memory: Updates  # each leaf (memory_size, *shape)
    y_memory: Updates  # each leaf (memory_size, *shape)
    rho_memory: jax.Array  # (memory_size,)
    head: jax.Array  # int32 in [0, memory_size)


def scale_by_lbfgs(
    memory_size: int = 10, scale_init_precond: bool = True
) -> GradientTransformation:
    """Multiply updates by the L-BFGS approximation of the inverse Hessian.

    With the pairs ``s_i = x_{i+1} - x_i``, ``y_i = g_{i+1} - g_i`` of the last ``m`` steps and
    ``rho_i = 1/(s_i^T y_i)``, the direction is ``d_k = H_k g_k`` where

    .. math::
        H_k = V_{k-1}^T \\cdots V_{k-m}^T \\, \\gamma_k I \\, V_{k-m} \\cdots V_{k-1} + \\ldots, \\quad
        V_i = I - \\rho_i y_i s_i^T, \\quad
        \\gamma_k = \\frac{s_{k-1}^T y_{k-1}}{y_{k-1}^T y_{k-1}}

    computed by the two-loop recursion (Nocedal & Wright, Algorithm 7.4) without forming ``H_k``.
    The pair made by the previous step is added to the memory first, then the direction is
    computed; so in ``chain(scale_by_lbfgs(), scale_lr(lr), line_search)`` the memory only ever
    sees accepted steps. A pair with non-positive (or non-finite) curvature ``s^T y`` would make
    ``H_k`` indefinite: it is skipped, and the memory keeps its older pairs.

    The memory is a fixed-size ring buffer of stacked arrays (each leaf gets a leading axis of
    size ``memory_size``), so the state has the same structure at every step and can be carried
    through ``jax.lax.scan`` and ``jax.lax.cond``. Before any pair is stored (the first step),
    ``gamma = min(1, 1/||g||)``: the first step is at most of unit length (optax's convention).

    Args:
      memory_size: number of ``(s, y)`` pairs kept, ``m >= 1``.
      scale_init_precond: use ``gamma_k`` above as the scale of the initial inverse Hessian; if
        False, use the identity (``gamma = 1``).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.scale_by_lbfgs(memory_size=5), optix.scale_lr(0.5))
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)

    Reference: Nocedal & Wright, "Numerical Optimization", 2nd ed. 2006, Algorithms 7.4 and 7.5;
    Liu & Nocedal, "On the limited memory BFGS method for large scale optimization", 1989.
    """
    _validate.check_int("memory_size", memory_size, minimum=1)
    spec = Hyperparams()

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_lbfgs` params")

        # every buffer its own (a state donated to a jitted step must not alias itself)
        def buffer():
            return _tree.moments_like(params)

        def stacked():
            return jax.tree.map(lambda x: jnp.zeros((memory_size, *x.shape), x.dtype), buffer())

        return ScaleByLbfgsState(
            hyperparams=spec.init(),
            prev_params=buffer(),
            prev_updates=buffer(),
            s_memory=stacked(),
            y_memory=stacked(),
            rho_memory=jnp.zeros([memory_size], hyperparam_dtype()),
            head=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, **extra):
        del extra
        _validate.require_params(params, "scale_by_lbfgs")
        _validate.check_updates(updates, state.prev_updates, "scale_by_lbfgs")
        _, hyperparams = spec.step(state.hyperparams)
        x = _tree.cast_tree(params, state.prev_params)
        g = _tree.cast_tree(updates, state.prev_updates)

        # 1. the pair made by the previous step, if it exists and has positive curvature
        s = _tree.map_leaves(lambda a, b: a - b, x, state.prev_params)
        y = _tree.map_leaves(lambda a, b: a - b, g, state.prev_updates)
        sy = tree_inner(s, y)
        accept = (state.hyperparams.count > 0) & (sy > 0) & jnp.isfinite(sy)
        rho = jnp.where(accept, 1 / jnp.where(accept, sy, 1), 0).astype(state.rho_memory.dtype)

        def write(memory, new):
            slot = _tree.match_layout(jnp.asarray(new, memory.dtype), memory[0])
            return jnp.where(accept, memory.at[state.head].set(slot), memory)

        s_memory = jax.tree.map(write, state.s_memory, s)
        y_memory = jax.tree.map(write, state.y_memory, y)
        rho_memory = write(state.rho_memory, rho)
        head = jnp.where(accept, (state.head + 1) % memory_size, state.head).astype(jnp.int32)

        # 2. the scale of the initial inverse Hessian, from the newest pair
        newest = (head - 1) % memory_size
        have_pair = rho_memory[newest] > 0
        if scale_init_precond:
            s_new, y_new = _at(s_memory, newest), _at(y_memory, newest)
            yy = tree_inner(y_new, y_new)
            gamma_pair = tree_inner(s_new, y_new) / jnp.where(yy > 0, yy, 1)
            gnorm = jnp.sqrt(tree_inner(g, g))
            gamma_first = jnp.minimum(1, 1 / jnp.where(gnorm > 0, gnorm, 1))
            gamma = jnp.where(have_pair, gamma_pair, gamma_first)
        else:
            gamma = jnp.ones([], rho_memory.dtype)

        # 3. the two-loop recursion, newest pair to oldest, then back; empty slots have rho = 0
        order = (head - 1 - jnp.arange(memory_size, dtype=jnp.int32)) % memory_size

        def first_loop(q, i):
            s_i, y_i = _at(s_memory, i), _at(y_memory, i)
            alpha = rho_memory[i] * tree_inner(s_i, q)
            q = _tree.map_leaves(lambda a, b: (a - alpha * b).astype(a.dtype), q, y_i)
            return q, alpha

        q, alphas = jax.lax.scan(first_loop, g, order)
        r = _tree.map_leaves(lambda a: (gamma * a).astype(a.dtype), q)

        def second_loop(r, i_alpha):
            i, alpha = i_alpha
            s_i, y_i = _at(s_memory, i), _at(y_memory, i)
            beta = rho_memory[i] * tree_inner(y_i, r)
            r = _tree.map_leaves(lambda a, b: (a + (alpha - beta) * b).astype(a.dtype), r, s_i)
            return r, None

        r, _ = jax.lax.scan(second_loop, r, (order, alphas), reverse=True)
        direction = _tree.cast_tree(r, updates)
        new_state = ScaleByLbfgsState(hyperparams, x, g, s_memory, y_memory, rho_memory, head)
        return direction, new_state

    return GradientTransformation(init, update)
