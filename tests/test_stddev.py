"""``scale_by_stddev``: where its default differs from optax's.

The step-by-step comparisons with ``optax.scale_by_stddev`` are in ``tests/references.py``.
"""

from __future__ import annotations

import optax

import optix
from tests.reference import max_rel_diff


def test_scale_by_stddev_default_puts_eps_outside_the_root_unlike_optax(x64):
    assert max_rel_diff(optix.scale_by_stddev(0.9, 1e-2), optax.scale_by_stddev(0.9, 1e-2)) > 1e-3
