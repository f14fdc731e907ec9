"""The free memory LocalCluster checks, read in a real memory cgroup (a container's limit)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbhooks.units import size

LIMIT = 1_000_000_000


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[Path]:
    """A new memory cgroup limited to ``limit`` bytes (its ``cgroup.procs`` file); skips where
    this process may not make one (cgroup v1 or v2, as root)."""
    mount, limit_file = Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"  # v1
    if not mount.is_dir():
        mount, limit_file = Path("/sys/fs/cgroup"), "memory.max"  # v2
    group = mount / f"nbhooks-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / limit_file).write_text(str(limit))
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.rmdir()
        pytest.skip(f"cannot make a memory cgroup here ({exc})")
    try:
        yield group / "cgroup.procs"
    finally:
        group.rmdir()  # its processes have ended


SCRIPT = """
import nbhooks as nh
def fn():
    pass
cluster = nh.LocalCluster(lambda config: None, fn, fn, steps=10, model_dir={model_dir!r})
try:
    cluster.start()
except MemoryError as exc:
    print(exc)
print(cluster.state, cluster.pids)
"""


def test_a_cluster_a_containers_memory_cannot_hold_is_refused_there(tmp_path):
    """A LocalCluster (5 tasks of 250 MB or more) started in a 1 GB container, as on
    Binder: refused, the container's limit named, nothing started."""
    with memory_cgroup(LIMIT) as procs:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(model_dir=str(tmp_path / "job"))],
            preexec_fn=lambda: procs.write_text(str(os.getpid())),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.splitlines()
    assert out[0].startswith(
        "a LocalCluster of 5 tasks (chief:0, worker:0, worker:1, ps:0, evaluator:0) needs "
        "1.25 GB of memory or more (250 MB a task, each a TensorFlow process), and this "
        f"container (a {size(LIMIT)} memory limit, "
    ), out
    assert out[1:] == ["idle {}"]
    assert not (tmp_path / "job").exists()
