"""Counting how often a step is traced, where a test needs the number itself.

The suite bounds traces with ``chex.assert_max_traces`` (after ``chex.clear_trace_counter()``:
chex counts per definition site, which parametrized runs share); that works under ``jax.jit``
and ``nnx.jit`` alike. chex asserts a maximum; ``TraceCounter`` counts the traces of the function
it wraps and lets the test read the number, for an exact count (one trace per optimizer for two
optimizers sharing a step) and for helpers that return the count to their caller.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


class TraceCounter:
    """``@counter`` under a ``jax.jit`` or ``nnx.jit`` decorator: ``counter.count`` is the number
    of times the function was traced (its Python body runs once per trace)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return fn(*args, **kwargs)

        return counted
