"""optix against its references, step by step: one test per entry of ``tests/references.py``.

Every entry is a teacher-forced float64 comparison (``tests/reference.py``): at every step both
sides get the same gradient (and params), each keeps its own state, and every step's updates must
agree leaf by leaf at the entry's tolerance. The registry says, for each entry, which optimizer
it checks, against what, with which settings, by which loop and over how many steps; a public
optimizer of ``optix`` without an entry fails ``test_every_public_optimizer_has_a_reference``.
"""

from __future__ import annotations

import inspect
import threading

import jax
import numpy as np
import pytest
import torch

import optix
from tests.cases import CASES
from tests.reference import N_STEPS
from tests.references import IDS
from tests.references import NOT_OPTIMIZERS
from tests.references import REFERENCES
from tests.references import _cosine
from tests.references import _exponential
from tests.references import public_optimizers


@pytest.fixture
def torch64():
    """torch's default dtype float64: torch keeps some optimizer scalars (NAdam's ``mu_product``,
    the ``step`` counters) in the default dtype, which would otherwise be float32."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _global_x64() -> bool:
    """The process-wide x64 setting, as a thread that never entered ``jax.enable_x64`` sees it."""
    seen = []
    thread = threading.Thread(target=lambda: seen.append(jax.config.read("jax_enable_x64")))
    thread.start()
    thread.join()
    return seen[0]


@pytest.fixture
def x64_callbacks(x64):
    """x64 for the NumPy references too: ``jax.pure_callback`` canonicalises the callback's results
    on XLA's callback thread, which does not see the ``x64`` fixture's thread-local setting."""
    old = _global_x64()
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.fixture
def torch_ns_float64(monkeypatch):
    """torch.optim.Muon casts to bfloat16 before Newton-Schulz; for a float64 comparison of its
    algorithm the cast is made a copy (torch's in-place division then runs on float64)."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone())


@pytest.mark.parametrize("ref", REFERENCES, ids=IDS)
def test_matches_reference(ref, request):
    for name in ("x64",) * ref.x64 + ref.fixtures:
        request.getfixturevalue(name)
    ref.run()


def test_every_public_optimizer_has_a_reference():
    checked = {ref.optimizer for ref in REFERENCES}
    missing = sorted(set(public_optimizers()) - checked)
    assert not missing, f"public optimizers with no reference comparison: {missing}"


def test_every_case_is_checked_against_a_reference():
    """The contract suite's cases use public optimizers; each of those has a reference."""
    checked = {ref.optimizer for ref in REFERENCES}
    for case in CASES:
        name = getattr(case.factory, "__name__", "<lambda>")
        if name != "<lambda>":
            assert name in checked, case.name


def test_registry_is_well_formed():
    assert len(set(IDS)) == len(IDS), "duplicate reference ids"
    assert all(ref.steps >= 100 for ref in REFERENCES)
    for name in NOT_OPTIMIZERS:  # the exclusion list names public functions that exist
        fn = getattr(optix, name)
        assert inspect.isfunction(fn) and name in optix.__all__, name
    # the discovery finds aliases wherever they live, those outside CASES too
    assert {"sgd", "adam", "lbfgs", "momo", "momo_adam", "polyak_sgd"} <= set(public_optimizers())


def test_lambda_factors_match_optix_schedules(x64):
    """The LambdaLR factors of the torch entries are optix's schedules divided by the base lr,
    step by step."""
    exp = optix.schedules.exponential_decay(1e-2, 10, 0.5)
    cos = optix.schedules.cosine_decay(1e-2, 50, alpha=0.1)
    for k in range(N_STEPS):
        np.testing.assert_allclose(float(exp(k)), 1e-2 * _exponential(k), rtol=1e-13)
        np.testing.assert_allclose(float(cos(k)), 1e-2 * _cosine(k), rtol=1e-13)
