"""Sharpness-aware minimisation: step to a nearby worst case, then descend with its gradient."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._apply import apply_updates
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._chain import caller
from optix._chain import check_transform
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import multiply
from optix.toolkit import transform
from optix.transforms._common import hyperparams_only


class SamNormalizeState(NamedTuple):
    """State of the default adversarial direction of :func:`sam`: its step count only."""

    hyperparams: HyperparamState


def _normalize() -> GradientTransformation:
    """``g / ||g||`` over all leaves together; zero where the gradient is all zero."""

    def apply(updates, params, hp):
        del params, hp
        norm = _tree.global_norm(updates)
        scale = jnp.where(norm > 0, 1 / jnp.where(norm > 0, norm, 1), 0)
        return multiply(updates, scale)

    return hyperparams_only("sam", SamNormalizeState, Hyperparams(), apply)


class SamState(NamedTuple):
    """State of :func:`sam`: both optimizers' states, the anchor params and the cycle position."""

    hyperparams: HyperparamState  # rho; count is the number of calls to update
    opt_state: OptState  # the outer optimizer's state
    adv_state: OptState  # the adversarial direction's state
    cache: Params | None  # the params at the start of the cycle (None in opaque mode)
    steps_since_sync: jax.Array  # int32 position in the cycle, in [0, sync_period)


@transform(SamState)
def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation | None = None,
    rho: NonNegative = 0.05,
    *,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque: bool = False,
    axis_name: str | None = None,
) -> GradientTransformation:
    r"""Sharpness-aware minimisation: ascend to ``w + eps`` within radius ``rho``, then take the
    outer optimizer's step from ``w`` with the gradient found there.

    .. math::
        \epsilon = \rho \, \frac{\nabla f(w)}{\lVert \nabla f(w) \rVert_2}, \qquad
        w \leftarrow w + \mathrm{optimizer}\bigl(\nabla f(w + \epsilon)\bigr)

    ``adv_optimizer`` gives the ascent *direction* (default: the gradient normalised over all
    leaves together, and zero for an all-zero gradient); the adversarial step is ``+rho`` times
    it. A cycle is ``sync_period`` gradient evaluations: ``sync_period - 1`` adversarial steps
    (each from the previous adversarial point), then one outer step from the params the cycle
    started at. The default ``sync_period=2`` is the paper's SAM. Two modes, as in
    ``optax.contrib.sam``:

    - ``opaque=False`` (default): each call to ``update`` is one gradient evaluation. Adversarial
      calls return the ascent step; the last call of a cycle returns the update that moves the
      params to ``start + optimizer step``. The training loop is unchanged, but it sees the
      adversarial params (side effects such as batch-norm statistics happen there too).
    - ``opaque=True``: every call is a whole cycle. ``update`` must get ``grad_fn=`` among its
      keyword arguments, ``grad_fn(params, i) -> gradient`` for adversarial step ``i``; it is
      called ``sync_period - 1`` times and the call returns the outer step only. Under ``pmap``
      or ``shard_map`` give ``axis_name`` to average those gradients across devices.

    With ``opaque=False`` optix's outer step starts from the params at the start of the current
    cycle, so ``sync_period=1`` is the outer optimizer alone; ``optax.contrib.sam`` reads the
    cache of the previous call there and undoes each step. For ``sync_period >= 2`` the two agree.

    Args:
      optimizer: the outer optimizer, a complete one (ending in :func:`optix.scale_lr`).
      adv_optimizer: a transform giving the ascent direction (no learning rate, no sign flip);
        default: global normalisation of the gradient.
      rho: the radius ``rho`` >= 0 (0.05 in the paper), or a schedule of the call count.
      sync_period: gradient evaluations per cycle, >= 1.
      reset_state: re-initialise ``adv_optimizer``'s state at the end of each cycle.
      opaque: run whole cycles inside ``update`` (needs ``grad_fn``), as above.
      axis_name: in opaque mode, the mapped axis to average the adversarial gradients over.

    Returns:
      A transform with state :class:`SamState`; ``update`` needs ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> loss = lambda p: jnp.sum(p**2)
      >>> tx = optix.sam(optix.sgd(0.1), rho=0.05)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(2):  # an ascent step, then the descent step from the start
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = optix.apply_updates(params, updates)
      >>> opaque = optix.sam(optix.sgd(0.1), rho=0.05, opaque=True)
      >>> state = opaque.init(params)
      >>> grad_fn = lambda p, i: jax.grad(loss)(p)
      >>> updates, state = opaque.update(jax.grad(loss)(params), state, params, grad_fn=grad_fn)

    Reference: Foret, Kleiner, Mobahi & Neyshabur, `Sharpness-aware minimization for efficiently
    improving generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021.
    """
    check_transform(optimizer, "`optimizer`")
    adv = _normalize() if adv_optimizer is None else adv_optimizer
    check_transform(adv, "`adv_optimizer`")
    _validate.check_int("sync_period", sync_period, minimum=1)
    for name, flag in (("reset_state", reset_state), ("opaque", opaque)):
        if not isinstance(flag, bool):
            raise TypeError(f"`{name}` must be a bool, got {flag!r}")
    call_opt, call_adv = caller(optimizer), caller(adv)
    spec = Hyperparams(rho=rho)

    def init(params):
        _validate.check_float_leaves(params, "`sam` params")
        cache = None if opaque else jax.tree.map(jnp.copy, params)
        zero = jnp.zeros([], jnp.int32)
        return SamState(spec.init(), optimizer.init(params), adv.init(params), cache, zero)

    def select(flag, a, b):
        return jax.tree.map(lambda x, y: _tree.where(flag, x, y), a, b)

    def transparent(updates, state, params, h, extra):
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == sync_period - 1
        anchor = select(first, params, state.cache)
        direction, adv_state = call_adv(updates, state.adv_state, params, extra)
        adv_updates = multiply(direction, h.rho)
        opt_updates, opt_state = call_opt(updates, state.opt_state, anchor, extra)

        def leaf(g, a, p, u, v):
            outer = _tree.upcast(a) - _tree.upcast(p) + _tree.upcast(u)
            return _tree.where(last, outer, _tree.upcast(v)).astype(g.dtype)

        trees = (updates, anchor, params, opt_updates, adv_updates)
        new_updates = _tree.map_leaves(leaf, *trees)
        if reset_state:
            adv_state = select(last, adv.init(params), adv_state)
        else:
            adv_state = select(last, state.adv_state, adv_state)
        opt_state = select(last, opt_state, state.opt_state)
        steps = jnp.where(last, jnp.zeros_like(state.steps_since_sync), state.steps_since_sync + 1)
        return new_updates, opt_state, adv_state, anchor, steps

    def cycle(updates, state, params, h, extra):
        grad_fn = extra.get("grad_fn")
        if grad_fn is None:
            raise ValueError(
                "`sam(..., opaque=True)` needs the gradient function: call "
                "`update(grads, state, params, grad_fn=lambda params, i: grads_at(params))`"
            )
        extra = {k: v for k, v in extra.items() if k != "grad_fn"}
        adv_params, grads, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            direction, adv_state = call_adv(grads, adv_state, adv_params, extra)
            adv_params = apply_updates(adv_params, multiply(direction, h.rho))
            grads = grad_fn(adv_params, i)
            if axis_name is not None:
                grads = jax.lax.pmean(grads, axis_name=axis_name)
        if reset_state:
            adv_state = adv.init(params)
        outer, opt_state = call_opt(grads, state.opt_state, params, extra)
        outer = _tree.cast_tree(outer, updates)
        return outer, opt_state, adv_state, None, state.steps_since_sync

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "sam")
        _validate.check_float_leaves(updates, "`sam` updates")
        _validate.check_matches_params(updates, params)
        h, hyperparams = spec.step(state.hyperparams)
        if opaque:
            out = cycle(updates, state, params, h, extra)
        else:
            extra = {k: v for k, v in extra.items() if k != "grad_fn"}
            out = transparent(updates, state, params, h, extra)
        new_updates, opt_state, adv_state, cache, steps = out
        return new_updates, SamState(hyperparams, opt_state, adv_state, cache, steps)

    return GradientTransformation(init, update)
