"""Smoke tests of benchmarks/run.py and nnx_train.py at tiny sizes: they complete and print their
tables (no timings)."""

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

    from benchmarks.run import fusion_partitions
    from benchmarks.run import optimizer_pattern_kernel
    from benchmarks.run import stream_kernels

    copy, triad = stream_kernels()
    x = jnp.ones(1024)
    pattern = optimizer_pattern_kernel()
    for fn, args in [(copy, (x, x)), (triad, (x, x, x)), (pattern, (x, x, x, x))]:
        hlo = fn.lower(*args).compile().as_text()
        assert "input_output_alias" in hlo, hlo[:300]
    # m, v and p are all written in place: three donated inputs aliased to the three outputs
    assert pattern.lower(x, x, x, x).compile().as_text().count("may-alias") == 3
    parts = fusion_partitions(pattern.lower(x, x, x, x).compile().as_text())
    assert parts and all(p >= 1 for p in parts)


def test_nnx_train_runs_at_tiny_sizes_and_prints_its_tables():
    """Four compiles (optix and optax, under nnx.jit and jax.jit) of the tiny transformer: the
    CNN shares the harness and is left to the benchmark runs to keep this test cheap."""
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "nnx_train.py"), "--tiny"]
    cmd += ["--models", "transformer", "--optimizers", "sgd+momentum"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for path in ["nnx.jit", "jax.jit"]:
        for lib in ["optax", "optix"]:
            assert f"| transformer | sgd+momentum | {path} | {lib} |" in out.stdout
    assert "| transformer | sgd+momentum | " in out.stdout.split("nnx.jit overhead optax ms")[1]
    assert "| slope per Variable |" in out.stdout


def test_lbfgs_benchmark_runs_at_tiny_sizes_and_prints_its_table():
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "lbfgs.py"), "--tiny"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| leaves | params | optix compile s | optax compile s | compile ratio |" in out.stdout
    for leaves in ["3", "6"]:
        assert f"\n| {leaves} | " in out.stdout
    assert "- optix HLO: " in out.stdout


def test_default_path_benchmark_runs_at_tiny_sizes_and_prints_its_table():
    """benchmarks/default_path.py (issue 14: the unfused, donated step beside optax's) completes
    in its --tiny mode and prints a row per optimizer and library, with HLO and state counts."""
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "default_path.py"), "--tiny"]
    cmd += ["--optimizers", "adam"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| optimizer | library | step ms |" in out.stdout
    rows = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| adam |")]
    assert [row[1] for row in rows] == ["optax", "optix"], out.stdout
    for row in rows:
        instructions, fusions, leaves = (int(x.strip(" |")) for x in row[-3:])
        assert instructions > fusions > 0 and leaves > 0, row


def test_fuse_threshold_runs_at_tiny_sizes_and_prints_its_tables():
    """benchmarks/fuse_threshold.py (issue 14: where optix.fuse pays) completes in its --tiny mode
    and prints the leaf-size sweep and a row per tree and variant."""
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "fuse_threshold.py"), "--tiny"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| leaf size | leaves | optax ms | optix ms | fuse all ms |" in out.stdout
    assert "\n| 64 | 8 | " in out.stdout
    rows = {
        (cells[0].removeprefix("| "), cells[3])
        for cells in (line.split(" | ") for line in out.stdout.splitlines())
        if len(cells) == 10
    }
    for tree in ["small leaves", "flat"]:
        for variant in ["optax", "optix", "fuse", "fuse all", "floor"]:
            assert (tree, variant) in rows, out.stdout
