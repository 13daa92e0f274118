"""Regularization by the update: weight decay added to the gradient, and annealed gradient noise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from optix import _paths
from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._fusable import mark_elementwise
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import transform
from optix.transforms._common import hyperparams_only


def _static_bool(m: Any) -> bool | None:
    if isinstance(m, bool | np.bool_):
        return bool(m)
    if isinstance(m, np.ndarray) and m.shape == () and m.dtype == bool:
        return bool(m)
    return None


class AddDecayedWeightsState(NamedTuple):
    """State of :func:`add_decayed_weights`: its hyperparameters only."""

    hyperparams: HyperparamState  # weight_decay


@transform(AddDecayedWeightsState)
def add_decayed_weights(
    weight_decay: NonNegative = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
) -> GradientTransformation:
    r"""Add ``weight_decay * params`` to the updates.

    .. math:: u_t = g_t + \lambda \theta_{t-1}

    Placed before an adaptive scaling, this is the classic L2 penalty (torch.optim.SGD's and
    torch.optim.Adam's ``weight_decay``). Placed after it and before :func:`scale_lr`, it is
    decoupled weight decay, as in :func:`optix.adamw`.

    Args:
      weight_decay: ``lambda`` >= 0, or a schedule.
      mask: which params are decayed: a pytree of bools shaped like the params, a function
        ``params -> such a pytree``, or a dict of path patterns to bools, first match wins
        (``{"**/bias": False, "**": True}``). Default: all.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
      >>> tx = optix.add_decayed_weights(0.1, mask={"w": True, "b": False})
      >>> tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)[0]["b"]
      Array([0., 0.], dtype=float32)
    """

    def leaf(u, p, m, wd):
        static = _static_bool(m)
        if static is False:
            return u
        decayed = (_tree.upcast(u) + wd * p).astype(u.dtype)
        return decayed if static else jnp.where(m, decayed, u)

    def apply(updates, params, h):
        wd = h.weight_decay
        if mask is None:
            return _tree.map_leaves(lambda u, p: leaf(u, p, True, wd), updates, params)
        masks = _paths.resolve(mask, params, "`add_decayed_weights` mask")
        return _tree.map_leaves(lambda u, p, m: leaf(u, p, m, wd), updates, params, masks)

    def check_mask(params):
        if mask is not None:
            _paths.resolve(mask, params, "`add_decayed_weights` mask")

    spec = Hyperparams(weight_decay=weight_decay)
    tx = hyperparams_only(
        "add_decayed_weights",
        AddDecayedWeightsState,
        spec,
        apply,
        needs_params=True,
        check_init=check_mask,
    )
    # A mask refers to leaves by path, which packed buffers do not have.
    return mark_elementwise(tx) if mask is None else tx


class AddNoiseState(NamedTuple):
    """State of :func:`add_noise`: the hyperparameters (count is the step) and the PRNG key."""

    hyperparams: HyperparamState  # eta, gamma; count is t
    key: jax.Array  # raw PRNG key data; fixed, the step is folded in


def noise_key(key: jax.Array, step: ArrayLike, leaf_index: int) -> jax.Array:
    """The key that draws the noise of one leaf at one step in :func:`add_noise`.

    Documented so that the noise can be reproduced outside the optimizer: at 0-based ``step`` the
    noise of leaf number ``leaf_index`` (in ``jax.tree`` flattening order) is
    ``jax.random.normal(noise_key(key, step, leaf_index), shape, float32)`` times its standard
    deviation.

    Args:
      key: the raw (uint32) PRNG key data that ``add_noise`` keeps in its state, e.g.
        ``jax.random.PRNGKey(seed)``.
      step: the 0-based step.
      leaf_index: the leaf's position in flattening order.

    Returns:
      A raw PRNG key.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> tx = optix.add_noise(eta=0.01, gamma=0.55, seed=0)
      >>> state = tx.init(jnp.zeros(3))
      >>> bool(jnp.array_equal(state.key, jax.random.PRNGKey(0)))
      True
      >>> key = optix.noise_key(state.key, 0, 0)
      >>> std = jnp.sqrt(jnp.float32(0.01))
      >>> expected = std * jax.random.normal(key, (3,), jnp.float32)
      >>> updates, _ = tx.update(jnp.zeros(3), state)
      >>> bool(jnp.allclose(updates, expected))
      True
    """
    return jax.random.fold_in(jax.random.fold_in(key, step), leaf_index)


@transform(AddNoiseState)
def add_noise(
    eta: NonNegative = 0.01, gamma: NonNegative = 0.55, seed: Any = 0
) -> GradientTransformation:
    r"""Add annealed Gaussian noise to the updates.

    .. math:: u_t = g_t + n_t, \qquad n_t \sim \mathcal{N}\big(0, \eta / (1 + t)^\gamma\big)

    with ``t`` the 0-based step. The noise of leaf ``i`` at step ``t`` is drawn with
    :func:`noise_key` ``(key, t, i)``, ``jax.random.normal`` in float32 (or wider), so a run is
    reproducible from its seed. For complex leaves the noise is circular complex Gaussian with the
    same total variance.

    Args:
      eta: the initial variance, >= 0.
      gamma: the annealing exponent, >= 0 (0.55 in the paper).
      seed: an int or a PRNG key.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.add_noise(0.01, 0.55, seed=0), optix.scale_lr(0.1))

    Reference: Neelakantan et al., `Adding gradient noise improves learning for very deep
    networks <https://arxiv.org/abs/1511.06807>`_, 2015.
    """
    key = _validate.raw_key(seed)
    spec = Hyperparams(eta=eta, gamma=gamma)

    def init(params):
        _validate.check_float_leaves(params, "`add_noise` params")
        return AddNoiseState(spec.init(), jnp.copy(key))  # its own: donation deletes it

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_float_leaves(updates, "`add_noise` updates")
        h, hyperparams = spec.step(state.hyperparams)
        step = h.t - 1  # 0-based, as in the paper
        std = jnp.sqrt(h.eta / (1 + step.astype(h.eta.dtype)) ** h.gamma)
        leaves, treedef = jax.tree.flatten(updates)
        # Every leaf's noise_key at once: one batched hash instead of two per leaf (the same keys).
        step_key = jax.random.fold_in(state.key, step)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(step_key, jnp.arange(len(leaves)))

        def noisy(i, g):
            dt = _tree.compute_dtype(g.dtype)
            n = jax.random.normal(keys[i], jnp.shape(g), dt)
            with jax.numpy_dtype_promotion("standard"):
                return (g.astype(dt) + std * n).astype(g.dtype)

        out = treedef.unflatten([noisy(i, g) for i, g in enumerate(leaves)])
        return out, AddNoiseState(hyperparams, state.key)

    return GradientTransformation(init, update)
