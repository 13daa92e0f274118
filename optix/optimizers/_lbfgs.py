r"""L-BFGS: the two-loop recursion over a ring buffer of curvature pairs, and the optimizer that
chains it with a line search.

The pairs are kept flat: all leaves side by side in one vector (complex leaves as pairs of real
coordinates), so each inner product of the recursion is one reduction. Kept leaf by
leaf, each of the ``memory_size`` inner products is a sum of per-leaf sums that XLA copies into
every leaf's update kernel: compile time quadratic in the number of leaves.

Reference: Liu & Nocedal, `On the limited memory BFGS method for large scale optimization
<https://doi.org/10.1007/BF01589116>`_, Math. Programming 1989; Nocedal & Wright, "Numerical
Optimization", 2nd ed. 2006, ch. 7.
"""

from __future__ import annotations

import functools
from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._chain import chain
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegativeOrNone
from optix.toolkit import transform
from optix.transforms._linesearch import scale_by_backtracking_linesearch
from optix.transforms._scale import scale_lr
from optix.transforms._zoom_linesearch import scale_by_zoom_linesearch

# ---------------------------------------------------------------------------------------------
# The flat view: all leaves side by side in one real vector, in tree order.


def _flat_dtype(leaves: list[Any]) -> jnp.dtype:
    """The precision of the flat vector: the widest real state precision of the leaves."""
    return functools.reduce(
        _tree.wider, [_tree.real_dtype(x.dtype) for x in leaves], hyperparam_dtype()
    )


def _width(x: Any) -> int:
    """Real coordinates of a leaf: two per complex element."""
    return x.size * (2 if jnp.issubdtype(x.dtype, jnp.complexfloating) else 1)


def _ravel(leaves: list[jax.Array], dtype: jnp.dtype) -> jax.Array:
    """The leaves side by side in one real ``dtype`` vector."""
    parts = []
    for x in leaves:
        x = _tree.unsplit(x)  # leaves split over a mesh axis are gathered before they meet
        if jnp.iscomplexobj(x):
            x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
        parts.append(x.astype(dtype).ravel())
    if not parts:
        return jnp.zeros([0], dtype)
    return jnp.concatenate(parts) if len(parts) > 1 else parts[0]


def _unravel(flat: jax.Array, like: list[jax.Array]) -> list[jax.Array]:
    """The inverse of :func:`_ravel`: leaves shaped, typed and laid out like ``like``."""
    out, offset = [], 0
    for x in like:
        v = flat[offset : offset + _width(x)]
        offset += _width(x)
        if jnp.iscomplexobj(x):
            v = v.reshape(*x.shape, 2)
            v = jax.lax.complex(v[..., 0], v[..., 1])
        out.append(_tree.match_layout(v.reshape(x.shape).astype(x.dtype), x))
    return out


def _inner(a: jax.Array, b: jax.Array) -> jax.Array:
    """``<a, b>`` of two flat vectors, in the hyperparameter precision (or wider)."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.zeros([], hyperparam_dtype()) + jnp.sum(a * b)


def _axpy(alpha: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """``alpha x + y`` in the precision of ``y``."""
    with jax.numpy_dtype_promotion("standard"):
        return (alpha * x + y).astype(y.dtype)


class ScaleByLbfgsState(NamedTuple):
    """State of :func:`scale_by_lbfgs`.

    The memory holds up to ``memory_size`` pairs ``s_i = x_{i+1} - x_i``, ``y_i = g_{i+1} - g_i``,
    with ``rho_i = 1 / (s_i . y_i)`` (0 marks an empty slot). The pairs are flat: row ``i`` of
    ``s_memory`` and ``y_memory`` holds all leaves side by side in tree order (a complex leaf as
    interleaved real and imaginary parts), in the widest real precision of the state (float32,
    or float64 if any leaf is). ``head`` is the slot the next accepted pair is written to, so the
    newest pair is at ``head - 1`` (mod ``memory_size``).
    """

    hyperparams: HyperparamState  # count only: the number of updates made
    prev_params: Params  # x_{k-1}
    prev_updates: Updates  # g_{k-1}
    s_memory: jax.Array  # (memory_size, n): n real coordinates of all leaves
    y_memory: jax.Array  # (memory_size, n)
    rho_memory: jax.Array  # (memory_size,)
    head: jax.Array  # int32 in [0, memory_size)


@transform(ScaleByLbfgsState)
def scale_by_lbfgs(
    memory_size: int = 10, scale_init_precond: bool = True
) -> GradientTransformation:
    r"""Multiply updates by the L-BFGS approximation of the inverse Hessian.

    With the pairs ``s_i = x_{i+1} - x_i``, ``y_i = g_{i+1} - g_i`` of the last ``m`` steps and
    ``rho_i = 1/(s_i^T y_i)``, the direction is ``d_k = H_k g_k`` where

    .. math::
        H_k = V_{k-1}^T \cdots V_{k-m}^T \, \gamma_k I \, V_{k-m} \cdots V_{k-1} + \ldots, \quad
        V_i = I - \rho_i y_i s_i^T, \quad
        \gamma_k = \frac{s_{k-1}^T y_{k-1}}{y_{k-1}^T y_{k-1}}

    computed by the two-loop recursion (Nocedal & Wright, Algorithm 7.4) without forming ``H_k``.
    The pair made by the previous step is added to the memory first, then the direction is
    computed; so in ``chain(scale_by_lbfgs(), scale_lr(lr), line_search)`` the memory only ever
    sees accepted steps. A pair with non-positive (or non-finite) curvature ``s^T y`` would make
    ``H_k`` indefinite: it is skipped, and the memory keeps its older pairs.

    The memory is a fixed-size ring buffer of flat arrays (all leaves side by side, see
    :class:`ScaleByLbfgsState`), so the state has the same structure at every step and can be
    carried through ``jax.lax.scan`` and ``jax.lax.cond``, and each inner product of the
    recursion is one reduction: compile time grows linearly with the number of leaves. The
    recursion runs in the widest state precision of the leaves (float32 for float32 and bfloat16
    params, float64 if any leaf is; complex leaves count as pairs of real coordinates), and the
    direction comes back in each gradient's dtype. Before any
    pair is stored (the first step), ``gamma = min(1, 1/||g||)``: the first step is at most of
    unit length (optax's convention).

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
    Liu & Nocedal, `On the limited memory BFGS method for large scale optimization
    <https://doi.org/10.1007/BF01589116>`_, Math. Programming 1989.
    """
    _validate.check_int("memory_size", memory_size, minimum=1)
    spec = Hyperparams()

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_lbfgs` params")

        # every buffer its own (a state donated to a jitted step must not alias itself)
        def buffer():
            return _tree.moments_like(params)

        def stacked():
            leaves = jax.tree.leaves(buffer())
            n = sum(_width(x) for x in leaves)
            return jnp.zeros((memory_size, n), _flat_dtype(leaves))

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
        h, hyperparams = spec.step(state.hyperparams)
        x = _tree.cast_tree(params, state.prev_params)
        g = _tree.cast_tree(updates, state.prev_updates)

        # 1. the pair made by the previous step, if it exists and has positive curvature
        dtype = state.s_memory.dtype
        s = _ravel(
            jax.tree.leaves(_tree.map_leaves(lambda a, b: a - b, x, state.prev_params)), dtype
        )
        y = _ravel(
            jax.tree.leaves(_tree.map_leaves(lambda a, b: a - b, g, state.prev_updates)), dtype
        )
        sy = _inner(s, y)
        accept = (h.t > 1) & (sy > 0) & jnp.isfinite(sy)  # no pair before the first step
        rho = jnp.where(accept, 1 / jnp.where(accept, sy, 1), 0).astype(state.rho_memory.dtype)

        def write(memory, new):
            # one row written in place; the rest of the memory is not touched
            row = _tree.match_layout(jnp.asarray(new, memory.dtype), memory[0])
            return memory.at[state.head].set(jnp.where(accept, row, memory[state.head]))

        s_memory = write(state.s_memory, s)
        y_memory = write(state.y_memory, y)
        rho_memory = write(state.rho_memory, rho)
        head = jnp.where(accept, (state.head + 1) % memory_size, state.head).astype(jnp.int32)

        # 2. the scale of the initial inverse Hessian, from the newest pair
        newest = (head - 1) % memory_size
        have_pair = rho_memory[newest] > 0
        g_leaves = jax.tree.leaves(g)
        q = _ravel(g_leaves, dtype)
        if scale_init_precond:
            s_new, y_new = s_memory[newest], y_memory[newest]
            yy = _inner(y_new, y_new)
            gamma_pair = _inner(s_new, y_new) / jnp.where(yy > 0, yy, 1)
            gnorm = jnp.sqrt(_inner(q, q))
            gamma_first = jnp.minimum(1, 1 / jnp.where(gnorm > 0, gnorm, 1))
            gamma = jnp.where(have_pair, gamma_pair, gamma_first)
        else:
            gamma = jnp.ones([], rho_memory.dtype)

        # 3. the two-loop recursion, newest pair to oldest, then back; empty slots have rho = 0
        order = (head - 1 - jnp.arange(memory_size, dtype=jnp.int32)) % memory_size

        def first_loop(q, i):
            alpha = rho_memory[i] * _inner(s_memory[i], q)
            return _axpy(-alpha, y_memory[i], q), alpha

        q, alphas = jax.lax.scan(first_loop, q, order)
        with jax.numpy_dtype_promotion("standard"):
            r = (gamma * q).astype(q.dtype)

        def second_loop(r, i_alpha):
            i, alpha = i_alpha
            beta = rho_memory[i] * _inner(y_memory[i], r)
            return _axpy(alpha - beta, s_memory[i], r), None

        r, _ = jax.lax.scan(second_loop, r, (order, alphas), reverse=True)
        direction = _tree.cast_tree(
            jax.tree.unflatten(jax.tree.structure(g), _unravel(r, g_leaves)), updates
        )
        new_state = ScaleByLbfgsState(hyperparams, x, g, s_memory, y_memory, rho_memory, head)
        return direction, new_state

    return GradientTransformation(init, update)


def lbfgs(
    learning_rate: NonNegativeOrNone = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | Literal["zoom", "backtracking"] | None = "zoom",
) -> GradientTransformation:
    r"""L-BFGS: steps along the limited-memory BFGS direction, with a line search.

    .. math::
        d_k = H_k g_k, \qquad x_{k+1} = x_k - \eta_k \, \alpha \, d_k

    where ``H_k`` is the inverse-Hessian approximation built from the last ``memory_size`` pairs
    of parameter and gradient differences (see :func:`scale_by_lbfgs`), ``alpha`` the learning
    rate and ``eta_k`` the step length the line search picks. The chain is
    ``chain(scale_by_lbfgs(...), scale_lr(learning_rate), linesearch)``, as in optax's ``lbfgs``.

    With the default zoom line search (strong Wolfe, first trial step 1, at most 20 evaluations)
    ``update`` needs the objective: call ``tx.update(grad, state, params, value=value,
    grad=grad, value_fn=f)``. :func:`optix.value_and_grad_from_state` then gives the next
    ``(value, grad)`` for free, since the line search computed them at the accepted point.
    With ``linesearch=None`` the step length is fixed to ``learning_rate`` and ``update`` needs
    no objective, which suits stochastic gradients (where curvature pairs are noisy; use a
    small learning rate).

    Args:
      learning_rate: scales the direction before the line search (so with one, it is the first
        step length tried); None means 1. With ``linesearch=None``, the fixed step length.
      memory_size: number of curvature pairs kept.
      scale_init_precond: scale the initial inverse Hessian by ``s^T y / y^T y``.
      linesearch: ``"zoom"`` (:func:`scale_by_zoom_linesearch` with
        ``initial_guess_strategy="one"``), ``"backtracking"``
        (:func:`scale_by_backtracking_linesearch` with ``store_grad=True``), a line-search
        transform, or None for a fixed step.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> f = lambda x: jnp.sum((x - jnp.arange(3.0)) ** 2) + 0.25 * jnp.sum(x**4)
      >>> tx = optix.lbfgs()
      >>> x = jnp.zeros(3)
      >>> state = tx.init(x)
      >>> value_and_grad = optix.value_and_grad_from_state(f)
      >>> for _ in range(20):
      ...     value, grad = value_and_grad(x, state=state)
      ...     updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
      ...     x = optix.apply_updates(x, updates)
      >>> bool(jnp.linalg.norm(value_and_grad(x, state=state)[1]) < 1e-4)
      True

    Reference: Liu & Nocedal, `On the limited memory BFGS method for large scale optimization
    <https://doi.org/10.1007/BF01589116>`_, Math. Programming 1989; Nocedal & Wright, "Numerical
    Optimization", 2nd ed. 2006, ch. 7.
    """
    if linesearch == "zoom":
        linesearch = scale_by_zoom_linesearch(20, initial_guess_strategy="one")
    elif linesearch == "backtracking":
        linesearch = scale_by_backtracking_linesearch(store_grad=True)
    elif isinstance(linesearch, str):
        raise ValueError(
            f"`linesearch` must be 'zoom', 'backtracking', a transform or None, got {linesearch!r}"
        )
    members = [
        scale_by_lbfgs(memory_size, scale_init_precond),
        scale_lr(1.0 if learning_rate is None else learning_rate),
    ]
    if linesearch is not None:
        members.append(linesearch)
    return chain(*members)
