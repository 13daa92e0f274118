"""Run a test module's checks in a child process that sees several (virtual CPU) devices.

The pytest process has already initialised JAX with one CPU device, so multi-device checks run in
a fresh interpreter started with ``--xla_force_host_platform_device_count``. The child prints one
JSON line (prefixed with ``RESULT``) that the parent asserts on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Bounds a hang, never measures speed: a child that compiles for minutes on a loaded 2-core
# machine is slow, not stuck. OPTIX_TEST_HANG_TIMEOUT (seconds) overrides it.
HANG_TIMEOUT = float(os.environ.get("OPTIX_TEST_HANG_TIMEOUT", 2400))


def child_env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run_child(script: Path, *args: str, devices: int = 8, timeout: float = HANG_TIMEOUT) -> Any:
    """Run ``python script args...`` with ``devices`` CPU devices; return its RESULT payload."""
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env=child_env(devices),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"child printed no RESULT:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1][len("RESULT ") :])


def emit(payload: Any) -> None:
    """Print the child's result for :func:`run_child`."""
    print("RESULT " + json.dumps(payload), flush=True)
