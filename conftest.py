"""Strict test configuration shared by the whole suite.

- JAX runs with strict dtype promotion and rank promotion raising, so no test passes by accident
  of an implicit cast (optix's own per-leaf math opts into standard promotion explicitly).
- Warnings are errors (see pyproject.toml).
- A skipped test fails the run: reference tests must never silently disappear.
"""

from __future__ import annotations

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} test(s) were skipped; optix's suite runs with no skips "
            "(install the test extra and torch==2.13.0, as the README says):",
            red=True,
        )
        for nodeid in _skipped[:20]:
            terminalreporter.write_line(f"  skipped: {nodeid}")


@pytest.fixture
def x64():
    """Run the test with 64-bit floats on (reference comparisons are made in float64)."""
    with jax.enable_x64(True):
        yield
