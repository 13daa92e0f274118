"""The examples run, and the quickstart's loss really falls."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_loss_falls(capsys):
    history = _load("quickstart").main(steps=400)
    tail = sum(history[-50:]) / 50
    assert tail < 0.2 * history[0], (history[0], tail)
    assert "loss fell from" in capsys.readouterr().out


def test_readme_quickstart_runs_and_fits():
    text = (ROOT / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert float(namespace["loss"]) < 1e-2
    w = namespace["params"]["w"].ravel()
    assert abs(float(w[0]) - 1.0) < 0.05 and abs(float(w[1]) + 2.0) < 0.05
