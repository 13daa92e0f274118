"""NAdamW: optix's default is Dozat's rule, not optax's.

The step-by-step comparisons (optax's rule as an option, against ``optax.nadamw``; the default,
against ``torch.optim.NAdam(decoupled_weight_decay=True)``) are entries of
``tests/references.py``: float64, 120 teacher-forced steps, ``rtol=1e-10`` against optax and
``rtol=1e-9, atol=1e-12`` against torch. Where optix's default convention differs from optax's, the
optax convention is the option checked there, and a test here shows that the two differ by far
more than the tolerance.
"""

from __future__ import annotations

import optax

import optix
from tests.reference import max_rel_diff

# ---------------------------------------------------------------------------------------------
# Where optix's default differs from optax's: the difference is far above the tolerance.
# ---------------------------------------------------------------------------------------------


def test_nadamw_default_is_dozats_rule_not_optaxs(x64):
    ours = optix.nadamw(3e-3, weight_decay=0.05)
    assert max_rel_diff(ours, optax.nadamw(3e-3, weight_decay=0.05)) > 1e-3


# ---------------------------------------------------------------------------------------------
# nadamw's default against torch.optim.NAdam(decoupled_weight_decay=True).
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# polyak_sgd reads the loss from `value=`: its own teacher-forced loop.
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Functions (not transforms): periodic_update and per-example clipping.
# ---------------------------------------------------------------------------------------------
