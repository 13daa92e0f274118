"""The skeleton shared by transforms whose whole state is their hyperparameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._base import Updates
from optix._hyperparams import Hyperparams


def hyperparams_only(
    transform: str,
    state_cls: Callable[..., OptState],
    spec: Hyperparams,
    apply: Callable[[Updates, Params | None, dict[str, jax.Array]], Updates],
    *,
    needs_params: bool = False,
    check_init: Callable[[Params], Any] | None = None,
) -> GradientTransformation:
    """Build a transform with state ``state_cls(hyperparams=...)``.

    ``apply(updates, params, hp)`` computes the new updates from this step's hyperparameter
    values. Leaves are checked to be float, and ``params`` to be given when ``needs_params``.
    """

    def init(params):
        _validate.check_float_leaves(params, f"`{transform}` params")
        if check_init is not None:
            check_init(params)
        return state_cls(hyperparams=spec.init())

    def update(updates, state, params=None, **extra):
        del extra
        if needs_params:
            _validate.require_params(params, transform)
            _validate.check_matches_params(updates, params)
        _validate.check_float_leaves(updates, f"`{transform}` updates")
        hp, hyperparams = spec.step(state.hyperparams)
        return apply(updates, params, hp), state_cls(hyperparams=hyperparams)

    return GradientTransformation(init, update)
