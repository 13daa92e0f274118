"""The optimizer comparison tool, driven as a user drives it: ``python -m optix.compare``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import optix.compare
from optix.compare import SpecError, parse_spec
from optix.compare._cli import main

ROOT = Path(__file__).resolve().parent.parent
CLASSIC = ["gd", "sgd1", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "optix.compare", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def check_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.ptp(image) > 0  # not a blank canvas


def test_default_run(tmp_path):
    proc = cli(tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "optix-compare-out"
    table = proc.stdout
    for name in optix.compare.DEFAULT_SUITE:
        assert f"# {name}:" in table
    rows = {line.split()[0] for line in table.splitlines() if line and not line.startswith("#")}
    assert set(CLASSIC + ["adamw"]) <= rows
    for column in ("final loss", "best loss", "test acc", "gap", "diverged", "compile s"):
        assert column in table

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"config", "problems"}
    assert set(results["problems"]) == set(optix.compare.DEFAULT_SUITE)
    logistic = results["problems"]["logistic"]["optimizers"]
    assert set(logistic) == set(CLASSIC + ["adamw"])  # the digits problems run every optimizer
    for entry in logistic.values():
        assert {"learning_rate", "metrics", "compile_s", "time_per_step_s", "sweep"} <= set(entry)
        assert {"final_loss", "best_loss", "test_acc", "gap", "steps_to_target"} <= set(
            entry["metrics"]
        )
        assert len(entry["sweep"]["learning_rate"]) == 11
    assert logistic["adam"]["metrics"]["test_acc"]["mean"] > 0.9

    pngs = sorted(out.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"rosenbrock_paths.png", "mlp_loss.png", "quadratic_lr.png"} <= names
    for png in pngs:
        check_png(png)
    report = (out / "report.md").read_text()
    for png in pngs:
        assert f"]({png.name})" in report


BAD_INPUTS = [
    ["--problem", "nope"],
    ["--optimizers", "nope"],
    ["--optimizers", "adam:learning_rate=__import__('os')"],
    ["--optimizers", "adam:learning_rate"],
    ["--steps", "0"],
    ["--lr-sweep", "1e-3:1"],
]
MORE_BAD_INPUTS = [
    ["--problem", "rosenbrock,"],
    ["--optimizers", "adam:nope=1"],
    ["--optimizers", "adam:learning_rate=-1"],
    ["--optimizers", "learning_rate=0.1"],
    ["--optimizers", "adam:learning_rate=(1"],
    ["--steps", "-5"],
    ["--steps", "ten"],
    ["--lr-sweep", "1:1e-3:5"],
    ["--lr-sweep", "a:b:c"],
    ["--seeds", "0"],
    ["--batch-size", "0"],
    ["--condition", "0.5"],
    ["--bogus"],
]


@pytest.mark.parametrize("args", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args):
    proc = cli(tmp_path, *args, "--out", "out")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optix-compare: error:"), proc.stderr
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", MORE_BAD_INPUTS)
def test_more_bad_input_through_main(tmp_path, monkeypatch, capsys, args):
    # the same entry point as the console script, in-process to save interpreter start-ups
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--out", "out"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optix-compare: error:"), captured.err
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_unknown_names_list_the_valid_ones(tmp_path):
    proc = cli(tmp_path, "--problem", "nope")
    assert "rosenbrock" in proc.stderr and "mlp" in proc.stderr
    proc = cli(tmp_path, "--optimizers", "adamm")
    assert "adam" in proc.stderr and "momentum" in proc.stderr


def test_adam_and_momentum_beat_gd_on_the_ill_conditioned_quadratic(tmp_path):
    args = ["--problem", "quadratic", "--condition", "1000", "--optimizers", "gd,momentum,adam"]
    proc = cli(tmp_path, *args, "--steps", "200", "--lr-sweep", "1e-3:1:7", "--json", "--no-plots")
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["problems"]["quadratic"]["optimizers"]
    final = {name: run["metrics"]["final_loss"]["mean"] for name, run in runs.items()}
    assert final["gd"] > 1e-4  # the slow directions (curvature 1e-3) are far from done
    assert final["momentum"] < final["gd"] / 100
    assert final["adam"] < final["gd"] / 100
    assert not list((tmp_path / "optix-compare-out").glob("*.png"))  # --no-plots


@pytest.mark.parametrize(("problem", "spec"), [("linear", "adam"), ("quadratic", "momentum")])
def test_vmapped_sweep_matches_separate_runs(problem, spec):
    rates = [0.003, 0.03, 0.3]
    swept = optix.compare.run(problem, spec, steps=40, seeds=2, lr_sweep=rates)
    run = swept[problem].summaries[0].run
    assert run.swept and run.loss.shape[:2] == (3, 2)
    # best_lr: the rate whose mean final loss over the seeds is lowest
    best = rates[int(np.argmin(run.loss[:, :, -1].mean(axis=1)))]
    assert swept.best_lr(problem, swept[problem].summaries[0].label) == best
    for i, lr in enumerate(rates):
        single = optix.compare.run(problem, f"{spec}:learning_rate={lr!r}", steps=40, seeds=2)
        alone = single[problem].summaries[0].run
        assert not alone.swept and alone.lrs.tolist() == [lr]
        np.testing.assert_allclose(run.loss[i], alone.loss[0], rtol=2e-5, atol=1e-7)


def test_seeds_give_mean_and_std(tmp_path):
    res = optix.compare.run("rosenbrock", "adam:learning_rate=0.05", steps=60, seeds=3)
    m = res["rosenbrock"].summaries[0].metrics["final_loss"]
    values = np.asarray(m["values"])
    assert values.shape == (3,) and np.all(np.isfinite(values))
    assert np.ptp(values) > 0  # different starts
    np.testing.assert_allclose(m["mean"], values.mean())
    np.testing.assert_allclose(m["std"], values.std())
    assert "±" in res.table()
    fig = res.plot("paths")
    assert len(fig.axes) == 1


def test_spec_parser():
    specs = parse_spec("adam:learning_rate=3e-4,b1=0.8,sgd:momentum=0.9,batch=full,gd")
    assert [s.label for s in specs] == ["adam", "sgd", "gd"]
    assert specs[0].learning_rate == 3e-4 and specs[0].kwargs == {"b1": 0.8}
    assert specs[1].kwargs == {"momentum": 0.9} and specs[1].batch == "full"
    assert specs[2].batch == "full"
    twice = parse_spec("adam:learning_rate=0.1,adam:learning_rate=0.01")
    assert [s.label for s in twice] == ["adam:learning_rate=0.1", "adam:learning_rate=0.01"]


@pytest.mark.parametrize(
    "text",
    [
        "adam:learning_rate=setattr(__import__('sys'), 'optix_pwned', 1)",
        "adam:learning_rate=(lambda: setattr(__import__('sys'), 'optix_pwned', 1))()",
        "adam:b1=[setattr(__import__('sys'), 'optix_pwned', 1) for _ in 'x']",
        "adam:learning_rate=1e-3 + len(str(setattr(__import__('sys'), 'optix_pwned', 1)))",
        "adam:learning_rate=__import__('os')",
    ],
)
def test_spec_parser_never_evaluates_code(text):
    with pytest.raises(SpecError, match="literal"):
        parse_spec(text)
    assert not hasattr(sys, "optix_pwned")


def test_library_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="valid problems"):
        optix.compare.run("nope", "adam")
    with pytest.raises(ValueError, match="positive integer"):
        optix.compare.run("rosenbrock", "adam", steps=0)
