"""Two real processes on localhost, one global mesh: data-parallel training with ZeRO-1 state.

Each process runs ``tests/multihost_worker.py`` with 2 CPU devices, joined by
``jax.distributed.initialize`` (gloo collectives over loopback). Both must end with the params of
a single-process run on the same global batch, and each must hold only its half of the optimizer
state.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests import multihost_worker
from tests._multidevice import HANG_TIMEOUT
from tests._multidevice import ROOT
from tests._multidevice import child_env

WORKER = Path(multihost_worker.__file__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    env = child_env(multihost_worker.LOCAL_DEVICES)  # the worker sets the same XLA flags itself
    port = str(_free_port())
    procs = []
    logs = []
    try:
        for i in range(2):
            log = open(tmp_path / f"worker_{i}.log", "w")  # noqa: SIM115
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), str(i), "2", port, str(tmp_path)],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        codes = [p.wait(timeout=HANG_TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        for log in logs:
            log.close()
    output = "\n".join((tmp_path / f"worker_{i}.log").read_text() for i in range(2))
    assert codes == [0, 0], output

    want = multihost_worker.train_single()
    for i in range(2):
        got = np.load(tmp_path / f"params_{i}.npz")
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
        # the state is split over the 4 global devices: each process holds half of the rows
        assert int(got["local_mu_rows"]) * 2 == int(got["global_mu_rows"])
