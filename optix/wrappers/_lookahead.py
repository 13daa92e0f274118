"""Lookahead: a fast optimizer explores, and every few steps slow weights move part of the way."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._apply import apply_updates
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._chain import caller
from optix._chain import check_transform
from optix.toolkit import Fraction
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import transform


class LookaheadState(NamedTuple):
    """State of :func:`lookahead`: the fast state, the slow weights and the sync counter."""

    inner_state: OptState  # the fast optimizer's state; re-initialised at syncs with reset_state
    slow: Params  # the slow weights phi, in their own dtype (at least float32 by default)
    count: jax.Array  # type: ignore[assignment]  # int32: fast steps since the last sync, in [0, sync_period)
    hyperparams: HyperparamState  # slow_step_size; count is the total number of updates


def _keep_values(fresh: OptState, current: OptState) -> OptState:
    """``fresh`` with the hyperparameter values (those :func:`optix.set_hyperparams` sets) of
    ``current``; counts and schedules' values stay fresh."""

    def is_hp(x):
        return isinstance(x, HyperparamState)

    leaves, treedef = jax.tree.flatten(fresh, is_leaf=is_hp)
    now = treedef.flatten_up_to(current)
    kept = [
        f._replace(values=c.values) if is_hp(f) else f for f, c in zip(leaves, now, strict=True)
    ]
    return treedef.unflatten(kept)


@transform(LookaheadState)
def lookahead(
    fast: GradientTransformation,
    sync_period: int,
    slow_step_size: Fraction,
    *,
    slow_dtype: DTypeLike | None = None,
    reset_state: bool = False,
) -> GradientTransformation:
    r"""Lookahead: take ``k`` steps with the fast optimizer, then pull the slow weights towards the
    fast ones and restart the fast weights from there.

    .. math::
        \theta_t = \theta_{t-1} + u^{\text{fast}}_t, \qquad
        \text{every } k \text{ steps: } \;
        \phi \leftarrow \phi + \alpha (\theta_t - \phi), \quad \theta_t \leftarrow \phi

    The slow weights ``phi`` live in the state, initialised to the params at ``init``; the params
    the training loop holds are the fast weights ``theta``. On an ordinary step the fast update is
    returned unchanged; on a synchronisation step (every ``sync_period``-th update) the returned
    update moves the params to the new slow weights, ``phi - theta_{t-1}``, so that after
    :func:`optix.apply_updates` the params equal ``phi`` (rounded to their dtype). ``theta_t`` is
    computed as ``apply_updates`` would compute it. The fast optimizer's state (moments, counts)
    carries on across synchronisations, as in the paper, unless ``reset_state=True``.

    With ``reset_state=True`` (``optax.lookahead``'s option of that name) every synchronisation
    step also re-initialises the fast optimizer's state, ``fast.init`` at the synchronised params:
    moments restart from zero and counts from 0, so bias corrections and any schedule inside the
    fast optimizer start again, as in optax. Hyperparameter values set with
    :func:`optix.set_hyperparams` are kept. For an optimizer whose state holds only moments and
    counts this equals optax, which initialises at the fast weights before the step; one that
    copies the params into its state (``schedule_free``) restarts from the synchronised params.

    The slow weights are the params to evaluate with: read them with
    :func:`~optix.wrappers._average.averaged_params` (``averaged_params(state, params)``), or take
    the params right after a synchronisation step, where they coincide. ``update`` needs
    ``params``; extra keyword arguments reach the fast optimizer when it accepts them.

    Args:
      fast: the inner optimizer, a complete one (ending in :func:`optix.scale_lr`).
      sync_period: ``k`` >= 1, the number of fast steps between synchronisations (5 to 10 in the
        paper).
      slow_step_size: ``alpha`` in [0, 1] (0.5 or 0.8 in the paper), or a schedule. With 1 the
        wrapper is the fast optimizer alone; with 0 the params return to their initial values
        every ``k`` steps.
      slow_dtype: dtype of the slow weights; default: the param's dtype widened to at least
        float32.
      reset_state: re-initialise the fast optimizer's state at each synchronisation.

    Returns:
      A transform with state :class:`LookaheadState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.lookahead(optix.sgd(0.1), sync_period=2, slow_step_size=0.5)
      >>> params = jnp.zeros(1)
      >>> state = tx.init(params)
      >>> for _ in range(2):  # fast: 0 -> 0.1 -> 0.2; then slow: 0 + 0.5 * (0.2 - 0) = 0.1
      ...     updates, state = tx.update(-jnp.ones(1), state, params)
      ...     params = optix.apply_updates(params, updates)
      >>> params
      Array([0.1], dtype=float32)

    Reference: Zhang, Lucas, Hinton & Ba, `Lookahead optimizer: k steps forward, 1 step back
    <https://arxiv.org/abs/1907.08610>`_, NeurIPS 2019.
    """
    check_transform(fast, "`fast`")
    _validate.check_int("sync_period", sync_period, minimum=1)
    _tree.check_state_dtype("slow_dtype", slow_dtype)
    if not isinstance(reset_state, bool):
        raise TypeError(f"`reset_state` must be a bool, got {reset_state!r}")
    call_fast = caller(fast)
    period = jnp.asarray(min(int(sync_period), int(jnp.iinfo(jnp.int32).max)), jnp.int32)
    spec = Hyperparams(slow_step_size=slow_step_size)

    def init(params):
        _validate.check_float_leaves(params, "`lookahead` params")
        # a copy even in the param's own dtype: state never shares a buffer with the params
        slow = jax.tree.map(lambda p: jnp.array(p, _tree.state_dtype(p.dtype, slow_dtype)), params)
        return LookaheadState(fast.init(params), slow, jnp.zeros([], jnp.int32), spec.init())

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "lookahead")
        _validate.check_float_leaves(updates, "`lookahead` updates")
        _validate.check_matches_params(updates, params)
        _validate.check_same_structure(params, state.slow, "params", "the `lookahead` state")
        h, hyperparams = spec.step(state.hyperparams)
        alpha = h.slow_step_size
        fast_updates, inner_state = call_fast(updates, state.inner_state, params, extra)
        count = state.count + 1
        sync = count >= period
        stepped = apply_updates(params, fast_updates)

        def leaf(u, p, theta, phi):
            phi_new = phi + alpha * (_tree.upcast(theta) - phi)
            reset = (phi_new - _tree.upcast(p)).astype(u.dtype)
            return jnp.where(sync, reset, u), jnp.where(sync, phi_new, phi).astype(phi.dtype)

        trees = (fast_updates, params, stepped, state.slow)
        new_updates, slow = _tree.map_leaves(leaf, *trees, n_out=2)
        if reset_state:
            fresh = _keep_values(fast.init(apply_updates(params, new_updates)), inner_state)
            inner_state = jax.tree.map(lambda a, b: _tree.where(sync, a, b), fresh, inner_state)
        count = jnp.where(sync, jnp.zeros_like(count), count)
        return new_updates, LookaheadState(inner_state, slow, count, hyperparams)

    return GradientTransformation(init, update)
