"""NAdamW: optix's default is Dozat's rule, not optax's.

The step-by-step comparisons (optax's rule as an option, against ``optax.nadamw``; the default,
against ``torch.optim.NAdam(decoupled_weight_decay=True)``) are entries of
``tests/references.py``: float64, 120 teacher-forced steps, ``rtol=1e-10`` against optax and
``rtol=1e-9, atol=1e-12`` against torch. Where optix's default convention differs from optax's, the
optax convention is the option checked there, and a test here shows that the two differ by far
more than the tolerance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optix
from tests.reference import (
    SHAPES,
    gradient_stream,
    params_stream,
)

# ---------------------------------------------------------------------------------------------
# Where optix's default differs from optax's: the difference is far above the tolerance.
# ---------------------------------------------------------------------------------------------


def _max_rel_diff(ours, theirs, seed: int = 0) -> float:
    """The largest relative difference of the two transforms' updates over teacher-forced steps."""
    grads, params = gradient_stream(seed), params_stream(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    s_ours, s_theirs = ours.init(as_jax(params[0])), theirs.init(as_jax(params[0]))
    worst = 0.0
    for g, p in zip(grads, params, strict=True):
        u_ours, s_ours = ours.update(as_jax(g), s_ours, as_jax(p))
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = theirs.update(as_jax(g), s_theirs, as_jax(p))
        for k in SHAPES:
            a, b = np.asarray(u_ours[k]), np.asarray(u_theirs[k])
            worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(b) + 1e-300), initial=0.0)))
    return worst


def test_nadamw_default_is_dozats_rule_not_optaxs(x64):
    ours = optix.nadamw(3e-3, weight_decay=0.05)
    assert _max_rel_diff(ours, optax.nadamw(3e-3, weight_decay=0.05)) > 1e-3


# ---------------------------------------------------------------------------------------------
# nadamw's default against torch.optim.NAdam(decoupled_weight_decay=True).
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# polyak_sgd reads the loss from `value=`: its own teacher-forced loop.
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Functions (not transforms): periodic_update and per-example clipping.
# ---------------------------------------------------------------------------------------------
