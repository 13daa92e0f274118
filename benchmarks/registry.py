"""Every registry optimizer, unfused, beside its optax counterpart: step time, compile time, state.

Run:  python benchmarks/registry.py [--tiny] [--leaves N] [--total N] [--steps N] [--only a,b] [--hlo]

It checks issue 7's target "no regression for the unfused path: every registry optimizer's step
<= 1.1x optax on the 500-leaf tree". For each case of ``tests/cases.py`` (built with
``case.make()``, the registry's hyperparameters) that optax also has, it times optax's optimizer,
built with the same hyperparameters, and optix's in the same process, with the timing harness of
``benchmarks/run.py`` (median of donated, jitted steps; ``lower().compile()`` time; state bytes).
The tree is ``--leaves`` float32 vectors holding ``--total`` params (default 500 leaves, 16M
params; ``--tiny``: 20 leaves of 100 params, 2 steps, a smoke test). Ratios are optix / optax:
below 1 means optix is faster or smaller. Cases optax has no counterpart for are listed with the
reason. Nothing is written: the table goes to the terminal, and into RESULTS.md by hand.

The leaves are vectors, so the matrix optimizers run their vector path (Muon's AdamW branch,
Adafactor unfactored), on both sides alike.

``--hlo`` times nothing: it prints, for each case, the instructions and fusions of the optimised
HLO of both compiled steps, in all and per leaf (the difference between the tree and a one-leaf
tree, divided by the extra leaves). These counts are deterministic, so they show where optix's
kernels do more work than optax's while timings on a shared machine are noise: compile time
follows the per-leaf instructions and, more still, the scalar operands of each leaf's kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import re
import sys
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.contrib

try:  # benchmarks/run.py, whose timing harness this shares
    from benchmarks import run
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import run  # type: ignore[no-redef]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 1.1  # issue 7: unfused step <= 1.1x optax's


class Counterpart(NamedTuple):
    make: Callable[[dict[str, Any]], Any]  # the registry case's kwargs -> optax transformation
    note: str = ""  # where optax's math differs from optix's (the work per step does not)


def _same(fn: Callable[..., Any], **fixed: Any) -> Callable[[dict[str, Any]], Any]:
    """optax's ``fn`` takes the registry's kwargs as they are, plus ``fixed`` where optax's
    default differs from optix's."""
    return lambda kw: fn(**kw, **fixed)


def _sgd_l2(kw: dict[str, Any]) -> Any:
    """torch-style L2 decay: added to the gradient before the momentum."""
    sgd = optax.sgd(kw["learning_rate"], momentum=kw["momentum"])
    return optax.chain(optax.add_decayed_weights(kw["weight_decay"]), sgd)


def _sam(kw: dict[str, Any]) -> Any:
    """The registry's ``sam(adam(lr), rho=0.01)``: the adversarial step is a normalised gradient
    step of length rho, as in tests/test_sam.py."""
    adversary = optax.chain(optax.contrib.normalize(), optax.sgd(kw.get("rho", 0.01)))
    return optax.contrib.sam(optax.adam(kw["learning_rate"]), adversary)


def _muon(kw: dict[str, Any]) -> Any:
    """optax's Muon on matrices, and on other leaves plain AdamW, which is optix's non-matrix
    branch (optax.contrib.muon's own is Nesterov AdamW with Muon's eps), as in
    tests/test_muon.py."""
    lr = kw["learning_rate"]
    transforms = {
        "muon": optax.contrib.muon(lr, eps=1e-7, weight_decay=kw["weight_decay"]),
        "adam": optax.adamw(lr, eps=1e-8, weight_decay=0.0),
    }
    return optax.partition(transforms, _matrix_labels)


def _matrix_labels(params: dict) -> dict:
    return jax.tree.map(lambda p: "muon" if p.ndim == 2 else "adam", params)


# registry case name -> its optax counterpart, with the same hyperparameters.
OPTAX: dict[str, Counterpart] = {
    "sgd": Counterpart(_same(optax.sgd)),
    "momentum": Counterpart(_same(optax.sgd)),
    "nesterov": Counterpart(_same(optax.sgd)),
    "sgd_l2": Counterpart(_sgd_l2),
    "rmsprop": Counterpart(_same(optax.rmsprop, eps_in_sqrt=False)),
    "rmsprop_centered_momentum": Counterpart(_same(optax.rmsprop, eps_in_sqrt=False)),
    "adagrad": Counterpart(
        _same(optax.adagrad, initial_accumulator_value=0.0, eps=1e-10),
        "optax puts eps inside the root",
    ),
    "adadelta": Counterpart(_same(optax.adadelta)),
    "adam": Counterpart(_same(optax.adam)),
    "amsgrad": Counterpart(
        lambda kw: optax.amsgrad(kw["learning_rate"]),
        "optax takes the max of the second moment after bias correction",
    ),
    "adamw": Counterpart(_same(optax.adamw)),
    "adamax": Counterpart(_same(optax.adamax)),
    "nadam": Counterpart(_same(optax.nadam), "optax's NAdam has no momentum-decay schedule"),
    "radam": Counterpart(_same(optax.radam), "optax adds eps after bias correction"),
    "noisy_sgd": Counterpart(_same(optax.noisy_sgd, key=0), "the noise draws differ"),
    "schedule_free_sgd": Counterpart(_same(optax.contrib.schedule_free_sgd)),
    "schedule_free_adamw": Counterpart(_same(optax.contrib.schedule_free_adamw)),
    "prodigy": Counterpart(_same(optax.contrib.prodigy)),
    "dadapt_adamw": Counterpart(_same(optax.contrib.dadapt_adamw)),
    "sam": Counterpart(_sam),
    "lbfgs": Counterpart(
        _same(optax.lbfgs),
        "no line search (fixed step): optax keeps curvature pairs with s.y <= 0, optix skips them",
    ),
    "adabelief": Counterpart(_same(optax.adabelief)),
    "yogi": Counterpart(_same(optax.yogi)),
    "adopt": Counterpart(_same(optax.contrib.adopt)),
    "ademamix": Counterpart(_same(optax.contrib.ademamix)),
    "adan": Counterpart(
        _same(optax.adan, eps_root=0.0),
        "optax weights the gradient difference by 1 - b2, the paper by b2",
    ),
    "lion": Counterpart(_same(optax.lion)),
    "sign_sgd": Counterpart(_same(optax.sign_sgd)),
    "signum": Counterpart(_same(optax.signum)),
    "rprop": Counterpart(
        _same(optax.rprop), "optax 0.2.8 returns the previous step's update (optax PR #1725)"
    ),
    "lamb": Counterpart(_same(optax.lamb)),
    "lars": Counterpart(_same(optax.lars)),
    "novograd": Counterpart(_same(optax.novograd)),
    "fromage": Counterpart(_same(optax.fromage)),
    "adafactor": Counterpart(_same(optax.adafactor)),
    "adafactor_factored_momentum": Counterpart(_same(optax.adafactor)),
    "sm3": Counterpart(_same(optax.sm3), "optax adds no eps inside the root"),
    "muon": Counterpart(
        _muon, "optax bias-corrects the momentum and adds eps to the norm (optix clamps)"
    ),
    "madgrad": Counterpart(_same(optax.contrib.madgrad)),
    "cocob": Counterpart(
        _same(optax.contrib.cocob), "optax's lr scales the gradient (a no-op for the bet)"
    ),
    "dog": Counterpart(_same(optax.contrib.dog)),
    "dowg": Counterpart(_same(optax.contrib.dowg)),
    "simplified_ademamix": Counterpart(_same(optax.contrib.simplified_ademamix)),
    "acprop": Counterpart(_same(optax.contrib.acprop)),
    "mechanize_adam": Counterpart(
        lambda kw: optax.contrib.mechanize(
            optax.adam(kw["learning_rate"]), weight_decay=kw["weight_decay"]
        )
    ),
    "galore": Counterpart(_same(optax.contrib.galore), "optax runs the SVD in float32"),
    "nadamw": Counterpart(_same(optax.nadamw), "optax's NAdam has no momentum-decay schedule"),
    "adamaxw": Counterpart(_same(optax.adamaxw)),
    "optimistic_gradient_descent": Counterpart(_same(optax.optimistic_gradient_descent)),
    "optimistic_adam": Counterpart(_same(optax.optimistic_adam_v2)),
}

# registry case name -> why it has no optax counterpart to time against.
NOT_COMPARABLE: dict[str, str] = {
    "shampoo": "not in optax",
    "shampoo_eigenvalue_corrected": "not in optax",
    "soap": "not in optax",
    "normuon": "not in optax (optax.contrib has muon, not NorMuon)",
    "psgd_kron": "not in optax",
    "sophia": "the registry case estimates the Hessian from squared gradients; optax's sophia "
    "needs an objective (obj_fn) for its Hutchinson estimator",
}


def registry() -> list[Any]:
    """The cases of tests/cases.py (the repository root put on sys.path when run as a script)."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from tests.cases import CASES

    return CASES


def make_tree(leaves: int, total: int) -> tuple[dict, dict]:
    """Params (0.01) and fixed gradients (1e-3): ``leaves`` float32 vectors, ``total`` in all."""
    shapes = run.leaves_shapes(leaves, total)
    params = {k: jnp.full(s, 0.01, jnp.float32) for k, s in shapes.items()}
    grads = {k: jnp.full(s, 1e-3, jnp.float32) for k, s in shapes.items()}
    return params, grads


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else f"{a:,} B / 0 B"  # optax keeps no state (sgd)


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 10**6 else f"{n:,}"


HEADER = (
    "| optimizer | optix step ms | optax step ms | step ratio | optix compile s "
    "| optax compile s | compile ratio | state ratio |"
)


def compare(case: Any, params: dict, grads: dict, steps: int, warmup: int) -> tuple[str, float]:
    """The table row of one case and its step ratio (optix / optax)."""
    theirs = run.measure(
        OPTAX[case.name].make(case.kwargs), params, grads, steps, warmup, standard=True
    )
    gc.collect()
    ours = run.measure(case.make(), params, grads, steps, warmup)
    gc.collect()
    cells = [
        f"{ours[0] * 1e3:.2f}",
        f"{theirs[0] * 1e3:.2f}",
        _ratio(ours[0], theirs[0]),
        f"{ours[1]:.2f}",
        f"{theirs[1]:.2f}",
        _ratio(ours[1], theirs[1]),
        _ratio(ours[2], theirs[2]),
    ]
    return "| " + " | ".join([case.name, *cells]) + " |", ours[0] / theirs[0]


def hlo_counts(tx: Any, params: dict, grads: dict, *, standard: bool = False) -> tuple[int, int]:
    """(instructions, fusions) in the optimised HLO of the donated, jitted step of ``tx``."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    with jax.numpy_dtype_promotion("standard") if standard else contextlib.nullcontext():
        state = jax.jit(tx.init)(params)
        text = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile().as_text()
    lines = text.splitlines()
    instructions = sum(1 for line in lines if _INSTRUCTION.match(line))
    return instructions, sum(1 for line in lines if " fusion(" in line and "calls=" in line)


_INSTRUCTION = re.compile(r"\s+(ROOT )?%?[\w.\-]+ = ")

HLO_HEADER = (
    "| optimizer | optix instr | optax instr | instr ratio | optix instr/leaf "
    "| optax instr/leaf | per-leaf ratio | optix fusions | optax fusions |"
)


def hlo_row(case: Any, trees: tuple[dict, dict], one: tuple[dict, dict], leaves: int) -> str:
    """The ``--hlo`` table row of one case: counts on the tree and per extra leaf."""
    theirs = OPTAX[case.name].make
    ours_n = hlo_counts(case.make(), *trees)
    theirs_n = hlo_counts(theirs(case.kwargs), *trees, standard=True)
    ours_1 = hlo_counts(case.make(), *one)
    theirs_1 = hlo_counts(theirs(case.kwargs), *one, standard=True)
    extra = max(leaves - 1, 1)
    ours_leaf = (ours_n[0] - ours_1[0]) / extra
    theirs_leaf = (theirs_n[0] - theirs_1[0]) / extra
    cells = [
        f"{ours_n[0]:,}",
        f"{theirs_n[0]:,}",
        f"{ours_n[0] / theirs_n[0]:.2f}x",
        f"{ours_leaf:.1f}",
        f"{theirs_leaf:.1f}",
        f"{ours_leaf / theirs_leaf:.2f}x" if theirs_leaf else "-",
        f"{ours_n[1]:,}",
        f"{theirs_n[1]:,}",
    ]
    return "| " + " | ".join([case.name, *cells]) + " |"


def run_hlo(cases: list[Any], leaves: int, total: int) -> None:
    """Print the ``--hlo`` table, one row per case as it is counted."""
    trees = make_tree(leaves, total)
    one = make_tree(1, max(total // leaves, 1))
    print(HLO_HEADER)
    print("|" + "---|" * (HLO_HEADER.count("|") - 1))
    for case in cases:
        try:
            row = hlo_row(case, trees, one, leaves)
        except Exception as e:  # noqa: BLE001  a failing optimizer is reported, not fatal
            row = error_row(case.name, e)
        print(row, flush=True)


def error_row(name: str, e: Exception) -> str:
    message = f"error: {type(e).__name__}: {e}".replace("|", "/").replace("\n", " ")[:150]
    return f"| {name} | {message} |" + " |" * 6


def run_all(cases: list[Any], params: dict, grads: dict, steps: int, warmup: int) -> dict:
    """Print one row per case as it is measured; return name -> step ratio (None on error)."""
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    ratios: dict[str, float | None] = {}
    for case in cases:
        try:
            row, ratios[case.name] = compare(case, params, grads, steps, warmup)
        except Exception as e:  # noqa: BLE001  a failing optimizer is reported, not fatal
            row, ratios[case.name] = error_row(case.name, e), None
        print(row, flush=True)
    return ratios


def summary(ratios: dict[str, float | None]) -> list[str]:
    timed = {k: r for k, r in ratios.items() if r is not None}
    above = [f"{k} {r:.2f}x" for k, r in timed.items() if r > TARGET]
    lines = [f"Step ratio <= {TARGET}x: {len(timed) - len(above)} of {len(timed)} timed."]
    if above:
        lines.append(f"Above {TARGET}x: {', '.join(above)}.")
    if len(timed) < len(ratios):
        lines.append(f"Errors: {', '.join(k for k, r in ratios.items() if r is None)}.")
    return lines


def notes(names: list[str]) -> list[str]:
    lines = [f"- {n}: {OPTAX[n].note}" for n in names if n in OPTAX and OPTAX[n].note]
    return ["Where optax's math differs (same work per step):", *lines] if lines else []


def not_comparable(names: list[str]) -> list[str]:
    lines = [f"- {n}: {NOT_COMPARABLE[n]}" for n in names if n in NOT_COMPARABLE]
    return ["No optax counterpart / not comparable:", *lines] if lines else []


def header(leaves: int, total: int, steps: int, warmup: int, *, hlo: bool = False) -> str:
    device = jax.devices()[0]
    per = max(total // leaves, 1)
    what = (
        "Optimised-HLO counts of the donated, jitted step"
        if hlo
        else f"Median of {steps} donated steps after {warmup} warm-up"
    )
    return (
        f"## `python benchmarks/registry.py` ({device.platform}: {device.device_kind}, "
        f"{os.cpu_count()} cores, jax {jax.__version__}, optax {optax.__version__})\n\n"
        f"Tree: {leaves} float32 leaves of {per:,} params ({_count(leaves * per)} params). "
        f"{what}; ratios are optix / optax."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="20 leaves of 100 params, 2 steps")
    parser.add_argument("--leaves", type=int, default=None, help="leaves in the tree (500)")
    parser.add_argument("--total", type=int, default=None, help="params in all (16M)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (20)")
    parser.add_argument("--only", default=None, help="comma-separated registry case names")
    parser.add_argument(
        "--hlo", action="store_true", help="optimised-HLO instruction counts instead of timings"
    )
    args = parser.parse_args(argv)

    cases = registry()
    if args.only:
        only = args.only.split(",")
        unknown = sorted(set(only) - {c.name for c in cases})
        if unknown:
            parser.error(f"unknown case(s) {unknown}; choose from {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in only]
    names = [c.name for c in cases]
    leaves = args.leaves or (20 if args.tiny else 500)
    total = args.total or (2000 if args.tiny else 16 * 2**20)
    steps = args.steps or (2 if args.tiny else 20)
    warmup = 1 if args.tiny else 2

    if args.hlo:
        print(header(leaves, total, steps, warmup, hlo=True) + "\n", flush=True)
        run_hlo([c for c in cases if c.name in OPTAX], leaves, total)
        return 0
    print(header(leaves, total, steps, warmup) + "\n", flush=True)
    params, grads = make_tree(leaves, total)
    ratios = run_all([c for c in cases if c.name in OPTAX], params, grads, steps, warmup)
    print("\n" + "\n".join(summary(ratios)))
    for section in (notes(names), not_comparable(names)):
        if section:
            print("\n" + "\n".join(section))
    unmapped = [n for n in names if n not in OPTAX and n not in NOT_COMPARABLE]
    if unmapped:
        print(f"\nUnmapped registry cases (add them to OPTAX or NOT_COMPARABLE): {unmapped}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
