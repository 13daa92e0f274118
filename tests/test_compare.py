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
from optix.compare import SpecError
from optix.compare import parse_spec
from optix.compare._cli import main
from tests._multidevice import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
CLASSIC = ["gd", "sgd1", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "optix.compare", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_TIMEOUT,
    )  # fmt: skip


def check_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.ptp(image) > 0  # not a blank canvas


def test_a_small_benchmark_from_the_command_line(tmp_path):
    args = ["--workloads", "logistic,rosenbrock", "--optimizers", "gd,sgd,adam"]
    proc = cli(tmp_path, *args, "--studies", "2", "--trials", "2")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "optix-compare-out"
    table = proc.stdout
    for name in ("logistic", "rosenbrock"):
        assert f"# {name}:" in table
    for column in ("steps", "seconds", "ratio", "valid error", "test error", "score (steps)"):
        assert column in table
    assert "same as gd" in table  # no data on rosenbrock: gd and sgd are one method there

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"config", "scores", "times", "ratios", "workloads"}
    assert results["config"]["command"].startswith("python -m optix.compare --workloads")
    logistic = results["workloads"]["logistic"]["optimizers"]
    assert set(logistic) == {"gd", "sgd", "adam"}
    for entry in logistic.values():
        assert {"steps_to_target", "seconds_to_target", "chosen_config", "test", "studies"} <= set(
            entry
        )
        assert len(entry["studies"]) == 2 and len(entry["studies"][0]["trials"]) == 2
    assert set(results["scores"]["steps"]) == {"gd", "sgd", "adam"}

    names = {p.name for p in out.glob("*.png")}
    assert names == {"profiles.png", "tuning_curves.png", "curves.png"}
    for png in out.glob("*.png"):
        check_png(png)
    report = (out / "report.md").read_text()
    assert "## Which optimizer to pick" in report and "- **logistic**" in report
    for name in names:
        assert f"]({name})" in report


BAD_INPUTS = [
    ["--workloads", "nope"],
    ["--optimizers", "nope"],
    ["--optimizers", "adam:learning_rate=__import__('os')"],
    ["--optimizers", "adam:learning_rate"],
    ["--ruleset", "nope"],
    ["--trials", "0"],
]
MORE_BAD_INPUTS = [
    ["--workloads", "logistic,"],
    ["--workloads", "logistic,logistic"],
    ["--optimizers", "adam:nope=1"],
    ["--optimizers", "adam:learning_rate=-1"],
    ["--optimizers", "learning_rate=0.1"],
    ["--optimizers", "adam:learning_rate=(1"],
    ["--studies", "-5"],
    ["--studies", "ten"],
    ["--trials", str(10**12 + 39)],  # all trials of a study share one vmapped step
    ["--seed", "x"],
    ["--bogus"],
    ["--problem", "rosenbrock"],  # the old flags of the quick comparison
    ["--optimizers", "sgd:momentum=0.9,nesterov='maybe'"],
    ["--optimizers", "sgd:momentum=0.9,nesterov=2"],
    ["--optimizers", "adam:b1=(0.5,1.5)"],
    ["--optimizers", "adam:b1=[0.5]"],
    ["--optimizers", "adam:mu_dtype='int8'"],
    ["--optimizers", "sgd:foo=1"],
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


@pytest.mark.parametrize("kind", ["file", "under_a_file"])
def test_out_that_cannot_be_a_directory_is_refused_before_the_run(
    tmp_path, monkeypatch, capsys, kind
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("keep me")
    out = "taken" if kind == "file" else "taken/sub"
    args = ["--workloads", "rosenbrock", "--optimizers", "adam", "--studies", "1", "--trials", "1"]
    assert main([*args, "--no-plots", "--out", out]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optix-compare: error: argument --out:"), lines
    assert "is not a directory" in lines[0]
    assert captured.out == ""
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sgd:momentum=0.9,nesterov='no'", False),
        ("sgd:momentum=0.9,nesterov=no", False),
        ("sgd:momentum=0.9,nesterov=False", False),
        ("sgd:momentum=0.9,nesterov=0", False),
        ("sgd:momentum=0.9,nesterov='off'", False),
        ("sgd:momentum=0.9,nesterov=True", True),
        ("sgd:momentum=0.9,nesterov=true", True),
        ("sgd:momentum=0.9,nesterov='YES'", True),
        ("sgd:momentum=0.9,nesterov=1", True),
        ("nesterov:nesterov=false", False),
    ],
)
def test_boolean_options_parse_strictly(text, expected):
    (spec,) = parse_spec(text)
    assert spec.kwargs["nesterov"] is expected


def test_a_quoted_no_does_not_turn_nesterov_on():
    """``nesterov='no'`` is plain momentum, step for step."""
    common = dict(steps=20, lr_sweep=None)
    off = optix.compare.run(
        "rosenbrock", "sgd:learning_rate=1e-3,momentum=0.9,nesterov='no'", **common
    )
    plain = optix.compare.run("rosenbrock", "sgd:learning_rate=1e-3,momentum=0.9", **common)
    on = optix.compare.run("rosenbrock", "sgd:learning_rate=1e-3,momentum=0.9,nesterov=1", **common)
    loss = lambda res: res["rosenbrock"].summaries[0].metrics["final_loss"]["mean"]  # noqa: E731
    assert loss(off) == loss(plain) != loss(on)


def test_unknown_names_list_the_valid_ones(tmp_path):
    proc = cli(tmp_path, "--workloads", "nope")
    assert "rosenbrock" in proc.stderr and "mlp" in proc.stderr
    proc = cli(tmp_path, "--optimizers", "adamm")
    assert "adam" in proc.stderr and "momentum" in proc.stderr


def test_adam_and_momentum_beat_gd_on_the_ill_conditioned_quadratic():
    res = optix.compare.run(
        "quadratic", "gd,momentum,adam", steps=200, lr_sweep="1e-3:1:7", condition=1000
    )
    final = {s.label: s.metrics["final_loss"]["mean"] for s in res["quadratic"].summaries}
    assert final["gd"] > 1e-4  # the slow directions (curvature 1e-3) are far from done
    assert final["momentum"] < final["gd"] / 100
    assert final["adam"] < final["gd"] / 100


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


def test_divisor_search_is_exact_and_fast_on_a_huge_prime():
    from optix.compare._runner import _divisor_at_most

    for n in range(1, 120):
        for k in range(1, 40):
            assert _divisor_at_most(n, k) == max(d for d in range(1, min(n, k) + 1) if n % d == 0)
    # a prime step count: the old search looped over ten million candidates
    assert _divisor_at_most(1_000_000_007, 10_000_000) == 1


def test_halton_unshifted_is_the_radical_inverse_in_bases_2_and_3():
    from optix.compare._search import halton

    expected = [[1 / 2, 1 / 3], [1 / 4, 2 / 3], [3 / 4, 1 / 9]]
    np.testing.assert_allclose(halton(3, 2, seed=None), expected, rtol=1e-15)
