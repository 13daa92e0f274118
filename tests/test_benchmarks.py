"""Smoke test of benchmarks/run.py at tiny sizes: it completes and prints its table (no timings)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests._multidevice import HANG_TIMEOUT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_harness_runs_at_tiny_sizes_and_prints_the_table(tmp_path):
    results = tmp_path / "RESULTS.md"
    cmd = [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "run.py"),
        "--tiny",
        "--cases",
        "flat,leaves500",
        "--optimizers",
        "adam,clip+adamw,adafactor",
        "--steps",
        "1",
        "--results",
        str(results),
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "| case | optimizer | variant | step ms |" in text
    for case in ["flat", "leaves500"]:
        for variant in ["optax", "optix", "fuse", "packed"]:
            assert f"| {case} | adam | {variant} |" in text
    assert "| flat | clip+adamw | packed |" in text
    assert "error:" not in text
    assert "Measured bandwidth" in text
    assert not results.exists()  # --tiny never writes results


def test_write_results_puts_a_new_section_outside_the_others(tmp_path):
    from benchmarks.run import write_results

    path = str(tmp_path / "RESULTS.md")
    with open(path, "w") as f:
        f.write("# Benchmark results\n\nintro\n\n## hand-written\n\nnotes\n")
    write_results(path, "quick", "## quick run", "| q |")
    write_results(path, "full", "## full run", "| f |")  # before quick's markers, not inside
    write_results(path, "quick", "## quick again", "| q2 |")  # replaced in place
    expected = (
        "# Benchmark results\n\nintro\n\n"
        "<!-- run.py full: begin -->\n## full run\n\n| f |\n<!-- run.py full: end -->\n\n"
        "<!-- run.py quick: begin -->\n## quick again\n\n| q2 |\n<!-- run.py quick: end -->\n\n"
        "## hand-written\n\nnotes\n"
    )
    with open(path) as f:
        assert f.read() == expected


def test_stream_kernels_write_into_their_donated_buffer():
    """The bandwidth test times kernels that write in place, as the optimizer steps it is compared
    with do: a kernel that allocates its output each call measures page faults, not bandwidth."""
    import jax.numpy as jnp

    from benchmarks.run import stream_kernels

    copy, triad = stream_kernels()
    x = jnp.ones(1024)
    for fn, args in [(copy, (x, x)), (triad, (x, x, x))]:
        hlo = fn.lower(*args).compile().as_text()
        assert "input_output_alias" in hlo, hlo[:300]
