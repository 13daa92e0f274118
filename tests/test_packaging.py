"""The wheel is complete: built from a copy of the sources, installed into a fresh virtual
environment, it imports on its own (not from the checkout), ships ``py.typed`` and the Apache-2.0
``LICENSE`` (so does the sdist), and declares the runtime requirements, which are exactly the
third-party packages optix imports.

Works offline: the wheel is built with the setuptools already installed here (no build isolation),
the clean environment gets the wheel only (``--no-deps``), and it finds jax and numpy through a
``.pth`` file that appends this environment's site-packages *after* its own, so an ``optix``
installed here (the editable install) can never shadow the wheel's.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile

import optix
from tests._multidevice import HANG_TIMEOUT

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNTIME_REQUIREMENTS = {"jax", "jaxlib", "numpy"}
# Required without being imported: jaxlib is jax's compiled backend (optix imports only jax).
BACKENDS = {"jaxlib": "jax"}
# Extras that only the project's own tooling installs; an import of optix/ cannot rely on them.
TOOLING_EXTRAS = {"test", "dev", "docs"}

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
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement string (PEP 503)."""
    name = re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports() -> tuple[set[str], set[str]]:
    """The third-party top-level modules optix/ imports: (at module level, inside functions)."""
    eager: set[str] = set()
    lazy: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                else:
                    names = [child.module or ""] if child.level == 0 else []
                (lazy if in_function else eager).update(n.split(".")[0] for n in names)
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, in_function or nested)

    for path in (ROOT / "optix").rglob("*.py"):
        visit(ast.parse(path.read_text(), str(path)), in_function=False)
    ours = set(sys.stdlib_module_names) | {"optix", "__future__"}
    return eager - ours, lazy - ours - eager


def test_runtime_requirements_are_what_optix_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    assert runtime == RUNTIME_REQUIREMENTS, f"runtime requirements: {sorted(runtime)}"
    distributions = importlib.metadata.packages_distributions()
    eager, lazy = _imports()
    # Every module-level import is a runtime requirement, and every runtime requirement is imported
    # (or is the backend of one that is): nothing the package never uses, like a test helper.
    imported = {_name(d) for m in eager for d in distributions.get(m, [m])}
    assert imported == runtime - BACKENDS.keys(), (
        f"imported at module level: {sorted(imported)}; runtime requirements: {sorted(runtime)}"
    )
    assert set(BACKENDS.values()) <= imported
    # An import inside a function (optix.compare's plots and data) belongs to a user-facing extra.
    extras = {
        _name(r)
        for extra, reqs in project["optional-dependencies"].items()
        if extra not in TOOLING_EXTRAS
        for r in reqs
    }
    lazily = {_name(d) for m in lazy for d in distributions.get(m, [m])}
    assert lazily <= extras, f"imported inside functions, in no extra: {sorted(lazily - extras)}"


def test_wheel_installs_and_imports_in_a_clean_environment(tmp_path):
    # Build from a copy, so no stale build/ or egg-info in the checkout can leak into the wheel.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "optix", src / "optix", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = (sys.executable, "-m", "pip")
    _run(*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), cwd=src)
    (wheel,) = wheels.glob("optix-*.whl")
    sdists = tmp_path / "sdists"
    build_sdist = f"from setuptools import build_meta; build_meta.build_sdist({str(sdists)!r})"
    _run(sys.executable, "-c", build_sdist, cwd=src)
    (sdist,) = sdists.glob("optix-*.tar.gz")

    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text, "LICENSE is not the full Apache-2.0 text"
    with tarfile.open(sdist) as tf:
        (sdist_license,) = [m for m in tf.getmembers() if m.name.endswith("/LICENSE")]
        member = tf.extractfile(sdist_license)
        assert member is not None and member.read().decode() == license_text
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(metadata_name).decode()
        (wheel_license,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert zf.read(wheel_license).decode() == license_text
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
    assert dict(fields)["License-Expression"].strip() == "Apache-2.0"
    assert [v.strip() for k, v in fields if k == "License-File"] == ["LICENSE"]
    requires = [v.strip() for k, v in fields if k == "Requires-Dist"]
    runtime = {_name(r) for r in requires if "extra" not in r}
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
