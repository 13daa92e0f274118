"""The benchmark protocol of optix.compare: scoring, search, selection and the vmapped runner."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix.compare
from optix.compare import Split
from optix.compare import Workload
from optix.compare import _protocol
from optix.compare import _search
from optix.compare import benchmark_score
from optix.compare import performance_profile
from optix.compare._bench_report import recommendations
from optix.compare._spec import parse
from tests.tracing import TraceCounter

INF = math.inf

# ties (w1: a and b), a miss (c on w2), a workload nobody solves (w4), a ratio beyond r_max (c, w3)
TIMES = {
    "a": {"w1": 10.0, "w2": 30.0, "w3": 7.0, "w4": INF},
    "b": {"w1": 10.0, "w2": 15.0, "w3": 14.0, "w4": INF},
    "c": {"w1": 25.0, "w2": INF, "w3": 35.0, "w4": INF},
}


def _numpy_profile(times, taus):
    """rho_o(tau) = |{w : t_ow <= tau * min_o' t_o'w}| / |W| (a workload nobody solves: none)."""
    names, work = list(times), list(next(iter(times.values())))
    t = np.array([[times[o][w] for w in work] for o in names])  # (O, W)
    best = t.min(axis=0)
    taus = np.asarray(taus)[:, None, None]
    solved = np.isfinite(best) & (t[None] <= taus * best)  # (tau, O, W)
    return {o: solved[:, i].sum(axis=1) / len(work) for i, o in enumerate(names)}


def test_performance_profile_matches_the_formula_with_ties_and_misses():
    taus = np.array([1.0, 1.2, 1.5, 2.0, 2.5, 3.5, 4.0, 6.0])
    got = performance_profile(TIMES, taus)
    want = _numpy_profile(TIMES, taus)
    assert set(got) == set(want)
    for o in want:
        np.testing.assert_array_equal(got[o], want[o])
    assert got["a"][0] == got["b"][0] == 0.5  # the tie on w1 counts for both at tau = 1


def test_benchmark_score_is_the_normalized_area_under_the_profile():
    r_max = 4.0
    # AlgoPerf integrates rho over a grid with the trapezoid rule; a fine grid converges to B
    taus = np.linspace(1.0, r_max, 30_001)
    want = {o: np.trapezoid(r, taus) / (r_max - 1) for o, r in _numpy_profile(TIMES, taus).items()}
    got = benchmark_score(TIMES, r_max=r_max)
    for o in want:
        assert got[o] == pytest.approx(want[o], abs=1e-4)
    # and exactly: each workload contributes (r_max - r) / (r_max - 1) when r <= r_max
    assert got["a"] == pytest.approx((3 / 3 + (4 - 2) / 3 + 3 / 3 + 0) / 4)
    assert got["c"] == pytest.approx(((4 - 2.5) / 3 + 0 + 0 + 0) / 4)
    assert benchmark_score({"x": {"w": 3.0}}) == {"x": 1.0}


@pytest.mark.parametrize(
    "times",
    [{}, {"a": {}}, {"a": {"w": 1.0}, "b": {"v": 1.0}}, {"a": {"w": float("nan")}}],
)
def test_scoring_rejects_bad_times(times):
    with pytest.raises(ValueError, match="times"):
        benchmark_score(times)


def test_quasi_random_search_is_deterministic_and_in_range():
    (adamw,) = parse("adamw")
    one = _search.configurations(adamw, "external", 3, 5, seed=7)
    assert one == _search.configurations(adamw, "external", 3, 5, seed=7)
    assert one != _search.configurations(adamw, "external", 3, 5, seed=8)
    flat = [c for study in one for c in study]
    assert len(flat) == 15 and len({c["learning_rate"] for c in flat}) == 15
    for c in flat:
        assert 1e-4 <= c["learning_rate"] <= 1e-1 and 0.5 <= c["b1"] <= 0.98
        assert 0.9 <= c["b2"] <= 0.999 and 1e-5 <= c["weight_decay"] <= 1e-1
        assert 0 <= c["warmup"] <= 0.1 and c["schedule"] in ("constant", "cosine")
    # the unshifted sequence: van der Corput in bases 2 and 3
    np.testing.assert_allclose(
        _search.halton(4, 2, seed=None),
        [[1 / 2, 1 / 3], [1 / 4, 2 / 3], [3 / 4, 1 / 9], [1 / 8, 4 / 9]],
    )
    (fixed,) = parse("adam:b1=0.8,learning_rate=0.01")  # what the spec gives is not searched
    for c in _search.configurations(fixed, "external", 1, 4)[0]:
        assert c["b1"] == 0.8 and c["learning_rate"] == 0.01
    (momentum,) = parse("momentum")  # a preset's own momentum (0.9) is searched
    assert "momentum" in {d.name for d in _search.space(momentum)}


def _regression(n_trace: TraceCounter | None = None, budget: int = 40) -> Workload:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=96)).astype(np.float32)

    def loss(p, batch):
        xb, yb = batch
        return jnp.mean((xb @ p["w"] + p["b"] - yb) ** 2)

    if n_trace is not None:
        loss = n_trace(loss)  # counts the traces of the loss

    def init(seed):
        w = jax.random.normal(jax.random.PRNGKey(seed), (4,), jnp.float32)
        return {"w": w, "b": jnp.zeros((), jnp.float32)}

    split = lambda a, b: Split(x[a:b], y[a:b])  # noqa: E731
    return Workload(
        "tiny_regression", init, loss, target=0.05, train=split(0, 64), valid=split(64, 80),
        test=split(80, 96), budget=budget, batch_size=16, eval_every=10,
    )  # fmt: skip


def test_vmapped_trials_equal_the_same_trials_run_one_by_one():
    w = _regression()
    (spec,) = parse("adamw")
    configs = _search.configurations(spec, "external", 1, 2, seed=3)[0]
    configs[0]["schedule"], configs[1]["schedule"] = "cosine", "constant"  # both kinds
    together = _protocol.train(w, spec, [configs], budget=w.budget, seed=5).studies[0]
    for j, config in enumerate(configs):
        # trial j of the study has seed 5 + j: run it alone with that seed
        alone = _protocol.train(w, spec, [[config]], budget=w.budget, seed=5 + j).studies[0]
        assert alone.seeds == [together.seeds[j]]
        np.testing.assert_allclose(together.valid_loss[j], alone.valid_loss[0], rtol=1e-5)
        np.testing.assert_allclose(together.test["loss"][j], alone.test["loss"][0], rtol=1e-5)
        assert together.steps_to_target[j] == alone.steps_to_target[0]
    assert np.ptp(together.valid_loss[:, -1]) > 0  # the trials did differ


def test_each_optimizer_and_workload_compiles_once_whatever_the_studies_and_trials():
    traces = TraceCounter()
    w = _regression(traces)
    (spec,) = parse("momentum")
    counts = []
    for studies, trials in [(1, 2), (3, 2), (2, 4)]:
        traces.count = 0
        _protocol._TEST_EVALUATORS.clear()  # the test evaluator is shared per workload
        configs = _search.configurations(spec, "external", studies, trials)
        res = _protocol.train(w, spec, configs, budget=w.budget)
        assert len(res.studies) == studies and len(res.studies[0].configs) == trials
        counts.append(traces.count)
    # one trace of the training chunk (loss under grad, validation loss) and one of the test
    # evaluation, however many studies and trials: every study reuses the one compiled step
    assert counts[0] == counts[1] == counts[2] <= 3


def _classifier(labels_seed: int | None) -> Workload:
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(3, 5)) * 2
    y = rng.integers(0, 3, size=150)
    x = (centers[y] + rng.normal(size=(150, 5))).astype(np.float32)
    y = y.astype(np.int32)
    y_test = y[120:].copy()
    if labels_seed is not None:
        y_test = np.random.default_rng(labels_seed).permutation(y_test)

    def predict(p, xb):
        return xb @ p["w"] + p["b"][None]

    def loss(p, batch):
        logits = predict(p, batch[0])
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), batch[1][:, None], 1))

    def init(seed):
        w = 0.01 * jax.random.normal(jax.random.PRNGKey(seed), (5, 3), jnp.float32)
        return {"w": w, "b": jnp.zeros(3, jnp.float32)}

    return Workload(
        "blobs", init, loss, target=0.1, train=Split(x[:90], y[:90]), valid=Split(x[90:120], y[90:120]),
        test=Split(x[120:], y_test), metric="error", predict=predict, budget=30, batch_size=16,
        eval_every=10,
    )  # fmt: skip


@pytest.mark.parametrize("ruleset", ["external", "lr-sweep"])
def test_the_choice_does_not_change_when_the_test_labels_are_permuted(ruleset):
    kw = dict(optimizers="adam", ruleset=ruleset, studies=2, trials=3)
    plain = optix.compare.run(workloads=[_classifier(None)], **kw)
    permuted = optix.compare.run(workloads=[_classifier(4)], **kw)
    tests = []
    for o in ("adam",):
        a, b = plain.entries[o]["blobs"], permuted.entries[o]["blobs"]
        assert a.chosen == b.chosen and a.config() == b.config()
        assert a.steps == b.steps
        tests.append((a.test()["error"], b.test()["error"]))
    assert any(x != y for x, y in tests)  # the test split was read, and reported
    assert plain.times() == permuted.times() and plain.scores() == permuted.scores()


def test_lr_sweep_chooses_on_final_validation_loss_and_self_runs_longer():
    w = _regression(budget=30)
    sweep = optix.compare.run(
        workloads=[w], optimizers="sgd", ruleset="lr-sweep", studies=1, trials=4
    )
    e = sweep.entries["sgd"]["tiny_regression"]
    study = e.trials.studies[0]
    assert [c["learning_rate"] for c in study.configs] == pytest.approx(np.logspace(-3, 0, 4))
    assert e.chosen == [int(np.nanargmin(study.valid_loss[:, -1]))]
    own = optix.compare.run(workloads=[w], optimizers="adam", ruleset="self", studies=2)
    e = own.entries["adam"]["tiny_regression"]
    assert e.trials.budget == 50 and e.trials.studies[0].steps[-1] == 50  # 1.5 x 30, rounded up
    assert [s.configs for s in e.trials.studies] == [[_search.self_config(parse("adam")[0])]] * 2
    assert e.trials.studies[0].seeds != e.trials.studies[1].seeds


def test_results_record_every_trial_and_the_environment():
    w = _regression(budget=20)
    res = optix.compare.run(workloads=[w], optimizers="adam,nesterov", studies=2, trials=2)
    d = res.to_dict()
    entry = d["workloads"]["tiny_regression"]["optimizers"]["nesterov"]
    assert len(entry["studies"]) == 2 and len(entry["studies"][0]["trials"]) == 2
    trial = entry["studies"][1]["trials"][1]
    assert {"config", "seed", "steps_to_target", "curve", "test"} <= set(trial)
    assert trial["curve"]["step"] == [10, 20] and "momentum" in trial["config"]
    assert {"jax", "numpy", "device", "cpu_cores", "python"} <= set(d["config"]["environment"])
    assert set(d["scores"]) == {"steps", "seconds"}
    (line,) = recommendations(res)
    assert line.startswith("- **tiny_regression**")


def test_bad_arguments_raise_early():
    with pytest.raises(ValueError, match="ruleset"):
        optix.compare.run(workloads="logistic", ruleset="nope")
    with pytest.raises(ValueError, match="studies"):
        optix.compare.run(workloads="logistic", studies=0)
    with pytest.raises(ValueError, match="valid workloads"):
        optix.compare.run(workloads="nope")
    with pytest.raises(ValueError, match="steps applies to problems"):
        optix.compare.run(workloads="logistic", steps=10)
    with pytest.raises(ValueError, match="not both"):
        optix.compare.run("rosenbrock", ruleset="self")
