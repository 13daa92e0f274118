"""The examples run, and each one's loss really falls."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    # registered in sys.modules first: dataclasses (flax linen modules) look their module up there
    qualified = f"optix_examples.{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, ROOT / "examples" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
    return sys.modules[qualified]


def test_quickstart_loss_falls(capsys):
    history = _load("quickstart").main(steps=400)
    tail = sum(history[-50:]) / 50
    assert tail < 0.2 * history[0], (history[0], tail)
    assert "loss fell from" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["flax_linen", "flax_nnx", "equinox_mlp"])
def test_example_loss_falls(name, capsys):
    history = _load(name).main(steps=150)
    assert len(history) == 150 and all(np.isfinite(history))
    tail = sum(history[-20:]) / 20
    assert tail < 0.5 * history[0], (history[0], tail)
    assert "loss fell from" in capsys.readouterr().out


def test_readme_quickstart_runs_and_fits():
    text = (ROOT / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert float(namespace["loss"]) < 1e-2
    w = namespace["params"]["w"].ravel()
    assert abs(float(w[0]) - 1.0) < 0.05 and abs(float(w[1]) + 2.0) < 0.05
