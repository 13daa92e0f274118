"""Smoke test of benchmarks/registry.py at tiny sizes: every registry case is either timed beside
its optax counterpart or listed as not comparable, so a new case cannot be left out (no timings
are asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.registry import HEADER
from benchmarks.registry import NOT_COMPARABLE
from benchmarks.registry import OPTAX
from tests._multidevice import HANG_TIMEOUT
from tests.cases import IDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_registry_case_has_a_counterpart_or_a_reason():
    for name in IDS:
        assert (name in OPTAX) != (name in NOT_COMPARABLE), name
    assert set(OPTAX) | set(NOT_COMPARABLE) <= set(IDS)  # no names of removed cases


def _run_tiny() -> str:
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "registry.py"), "--tiny"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _table_rows(text: str) -> dict[str, list[str]]:
    cells = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    return {c[0].strip(): [x.strip() for x in c[1:]] for c in cells[1:]}  # [0]: the header


def _not_comparable(text: str) -> set[str]:
    section = text.split("No optax counterpart / not comparable:")[1]
    return {line[2:].split(":")[0] for line in section.splitlines() if line.startswith("- ")}


def test_registry_benchmark_runs_at_tiny_sizes_and_covers_every_case():
    text = _run_tiny()
    assert HEADER in text
    assert "error" not in text.lower()
    rows = _table_rows(text)
    assert set(rows) == set(OPTAX)
    for name, cells in rows.items():
        assert len(cells) == 7, name
        assert float(cells[0]) >= 0 and float(cells[1]) >= 0, name  # step ms, both sides
    assert "Step ratio <= 1.1x:" in text
    listed = _not_comparable(text)
    assert listed == set(NOT_COMPARABLE)
    for name in IDS:
        assert name in rows or name in listed, name


def test_registry_hlo_counts_at_tiny_sizes(capsys):
    """``--hlo`` prints deterministic instruction counts instead of timings."""
    from benchmarks.registry import HLO_HEADER
    from benchmarks.registry import main

    assert main(["--hlo", "--tiny", "--only", "sgd"]) == 0
    text = capsys.readouterr().out
    assert HLO_HEADER in text and "error" not in text.lower()
    rows = _table_rows(text)
    assert set(rows) == {"sgd"}
    for cells in rows.values():
        assert len(cells) == 8 and int(cells[0].replace(",", "")) > 0
