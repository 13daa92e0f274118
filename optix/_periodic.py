r"""A target network's periodic refresh (the step-function counterpart of
:func:`optix.incremental_update`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _validate
from optix._base import Params


def periodic_update(
    new_tensors: Params, old_tensors: Params, steps: ArrayLike, update_period: int
) -> Params:
    r"""``new_tensors`` when ``steps`` is a multiple of ``update_period``, else ``old_tensors``.

    .. math:: \bar\theta = \begin{cases} \theta & t \bmod K = 0 \\ \bar\theta & \text{otherwise}
        \end{cases}

    A target network refreshed every ``K`` steps (DQN), as optax's ``periodic_update``; see
    :func:`incremental_update` for the smooth (Polyak) version. Each result leaf keeps the dtype
    of its ``old_tensors`` leaf.

    Args:
      new_tensors: the online params.
      old_tensors: the slow copy, same structure.
      steps: the int step counter (may be traced).
      update_period: ``K`` >= 1.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> optix.periodic_update(jnp.ones(2), jnp.zeros(2), steps=10, update_period=5)
      Array([1., 1.], dtype=float32)

    Reference: Mnih et al., `Playing Atari with deep reinforcement learning
    <https://arxiv.org/abs/1312.5602>`_, 2013.
    """
    _validate.check_int("update_period", update_period, minimum=1)
    _validate.check_same_structure(new_tensors, old_tensors, "new_tensors", "old_tensors")
    refresh = jnp.mod(jnp.asarray(steps), update_period) == 0
    return jax.tree.map(
        lambda n, o: jnp.where(refresh, jnp.asarray(n).astype(jnp.result_type(o)), o),
        new_tensors,
        old_tensors,
    )
