"""The wheel is complete: built from a copy of the sources, installed into a fresh virtual
environment, it imports on its own (not from the checkout), ships ``py.typed``, and declares the
runtime requirements.

Works offline: the wheel is built with the setuptools already installed here (no build isolation),
the clean environment gets the wheel only (``--no-deps``), and it finds jax, chex and numpy through
a ``.pth`` file that appends this environment's site-packages *after* its own, so an ``optix``
installed here (the editable install) can never shadow the wheel's.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import optix

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNTIME_REQUIREMENTS = {"jax", "jaxlib", "chex", "numpy"}

# Run by the clean interpreter: import everything the wheel holds and report where it came from.
PROBE = """
import importlib, json, pkgutil, sys
import optix
modules = sorted(m.name for m in pkgutil.walk_packages(optix.__path__, "optix."))
for name in modules:
    importlib.import_module(name)
missing = [n for n in optix.__all__ if not hasattr(optix, n)]
missing += ["schedules." + n for n in optix.schedules.__all__ if not hasattr(optix.schedules, n)]
submodules = [n for n in optix.__all__ if type(getattr(optix, n, None)).__name__ == "module"]
print(json.dumps({
    "file": optix.__file__, "version": optix.__version__, "modules": modules,
    "missing": missing, "submodules": submodules, "prefix": sys.prefix,
}))
"""


def _run(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_installs_and_imports_in_a_clean_environment(tmp_path):
    # Build from a copy, so no stale build/ or egg-info in the checkout can leak into the wheel.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "optix", src / "optix", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = (sys.executable, "-m", "pip")
    _run(*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), cwd=src)
    (wheel,) = wheels.glob("optix-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(metadata_name).decode()
    assert "optix/py.typed" in names, "py.typed is not in the wheel"
    shipped = {n for n in names if n.startswith("optix/") and n.endswith(".py")}
    sources = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "optix").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert shipped == sources, f"wheel vs sources: {sorted(shipped ^ sources)}"

    fields = [line.split(":", 1) for line in metadata.splitlines() if ":" in line]
    assert dict(fields)["Version"].strip() == optix.__version__
    requires = [v.strip() for k, v in fields if k == "Requires-Dist"]
    runtime = {
        re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower() for r in requires if "extra" not in r
    }
    assert runtime == RUNTIME_REQUIREMENTS, f"runtime requirements: {sorted(runtime)}"

    clean = tmp_path / "clean"
    _run(sys.executable, "-m", "venv", "--without-pip", str(clean), cwd=tmp_path)
    clean_python = clean / "bin" / "python"
    _run(
        *pip,
        "--python",
        str(clean_python),
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        str(wheel),
        cwd=tmp_path,
    )
    clean_site = pathlib.Path(
        _run(
            str(clean_python),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
            cwd=tmp_path,
        ).stdout.strip()
    )
    # Dependencies only, searched after the clean site-packages (.pth lines are appended).
    (clean_site / "_optix_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    probe = _run(str(clean_python), "-I", "-c", PROBE, cwd=tmp_path)
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert pathlib.Path(report["file"]).resolve().is_relative_to(clean_site.resolve()), report[
        "file"
    ]
    assert report["version"] == optix.__version__
    assert report["missing"] == []
    assert report["submodules"], "optix.__all__ lists no submodule (expected at least schedules)"
    assert {f"optix.{m}" for m in report["submodules"]} <= set(report["modules"])
    expected_modules = sorted(
        ".".join(pathlib.Path(s).with_suffix("").parts).removesuffix(".__init__")
        for s in sources
        if s != "optix/__init__.py"
    )
    assert report["modules"] == expected_modules
