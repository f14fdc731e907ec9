"""Shared fixtures: a small real Estimator on generated data."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _no_run_left_behind(request):
    """Fail a test that leaves a run training (or its thread alive), and close every run it
    made, ended or not, so that the next test starts with no run, thread or widget."""
    yield
    if "nbhooks.run" not in sys.modules:
        return
    from nbhooks.run import live_runs

    runs = live_runs()
    training = [f"{r.state} run in {r.model_dir}" for r in runs if r.running]
    for run in runs:
        run.close(timeout=60)
    threads = [t.name for t in threading.enumerate() if t.name == "nbhooks-training"]
    left = training + threads
    assert not left, f"{request.node.nodeid} left behind: {left} (close() what you start)"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs(options)``: a new directory with a tmpfs mounted on it with ``options`` (e.g.
    ``"size=8m"``, ``"ro,size=64k"``), unmounted after the test. Skips the test where no
    tmpfs can be mounted (mounting needs root)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        path = tmp_path / f"tmpfs-{len(mounted)}"
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({options}) here: {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "model"


@pytest.fixture
def estimator(model_dir: Path):
    import models

    return models.make_estimator(model_dir)


@pytest.fixture
def train_fn():
    import models

    return models.input_fn()


@pytest.fixture
def eval_fn():
    import models

    return models.input_fn(n=256, repeat=False, seed=1)


class CommLog(list):
    """Messages sent to the frontend by widgets: (msg_type, data, buffers) tuples; ``sent``
    has each one's comm id, whether the main thread sent it, and a copy of its data then."""

    def __init__(self, *messages: Any) -> None:
        super().__init__(*messages)
        self.sent: list[tuple[str, bool, dict]] = []

    def recorded(self) -> dict[str, dict]:
        """Each comm's state as a recorder that keeps only the main thread's messages holds it
        (nbclient keeps those of the running cell): its open, then its main-thread updates."""
        states: dict[str, dict] = {}
        for (msg_type, _, buffers), (comm_id, on_main, data) in zip(self, self.sent, strict=True):
            if not on_main or "state" not in data:
                continue
            if msg_type == "comm_msg" and data.get("method") != "update":
                continue
            state = data["state"]
            for path, buffer in zip(data.get("buffer_paths", ()), buffers or (), strict=True):
                *parents, last = path
                node = state
                for key in parents:
                    node = node[key]
                node[last] = buffer
            states.setdefault(comm_id, {}).update(state)
        return states

    def updates(self) -> list[dict]:
        return [d for t, d, _ in self if t == "comm_msg" and d.get("method") == "update"]

    def nbytes(self) -> int:
        import json

        return sum(
            len(json.dumps(d, default=str)) + sum(memoryview(b).nbytes for b in (bufs or ()))
            for _, d, bufs in self
        )


@pytest.fixture
def comm_log(monkeypatch) -> CommLog:
    """Real widgets with a recording comm: every message a widget would send is kept.

    The one place that patches the kernel side: ``comm.create_comm``.
    """
    import comm
    from comm.base_comm import BaseComm

    from nbhooks.views.base import on_main_thread

    log = CommLog()

    class RecordingComm(BaseComm):
        kernel = True  # widgets only send when the comm has a kernel

        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            log.append((msg_type, data or {}, buffers))
            log.sent.append((self.comm_id, on_main_thread(), copy.deepcopy(data or {})))

    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    return log
