"""PipelineStore on plain files: relative state paths, leftovers of interrupted writes, pins.

No TensorFlow session: checkpoints are stand-in files with the names TensorFlow writes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from nbhooks.atomic import temporary
from nbhooks.stores.pipeline_files import (
    INDEX_END,
    STATE_FILE,
    PipelineCheckpointError,
    PipelineStore,
    basename,
    parse_any,
)

pytestmark = pytest.mark.fast


def fake_checkpoint(model_dir: Path, name: str, size: int = 10) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / f"{name}.data-00000-of-00001").write_bytes(b"x" * size)
    (model_dir / f"{name}.index").write_bytes(b"i" + INDEX_END)  # a whole one (its end)


def write_state(model_dir: Path, *paths: str) -> None:
    lines = [f'model_checkpoint_path: "{paths[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{p}"' for p in paths]
    (model_dir / STATE_FILE).write_text("\n".join(lines) + "\n")


def test_absolute_state_paths_of_a_moved_model_dir_are_read_by_name(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    fake_checkpoint(old, "input.ckpt-5")
    write_state(old, str(old / "input.ckpt-5"))  # what TensorFlow wrote before
    shutil.copytree(old, new)
    shutil.rmtree(old)
    store = PipelineStore(new)
    assert store.state_path() == str(new / "input.ckpt-5")
    latest = store.latest()
    assert latest is not None and latest.path == str(new / "input.ckpt-5")


def test_restore_writes_relative_paths(tmp_path):
    fake_checkpoint(tmp_path, "input.ckpt-3")
    fake_checkpoint(tmp_path, "input.ckpt-6")
    store = PipelineStore(tmp_path)
    store.point_at(store.find(3))
    text = (tmp_path / STATE_FILE).read_text()
    assert 'model_checkpoint_path: "input.ckpt-3"' in text
    assert str(tmp_path) not in text
    moved = tmp_path.parent / "moved"
    shutil.copytree(tmp_path, moved)
    assert PipelineStore(moved).state_path() == str(moved / "input.ckpt-3")


def test_steps_of_numpy_integer_types_are_accepted(tmp_path):
    fake_checkpoint(tmp_path, "input.ckpt-20")
    store = PipelineStore(tmp_path)
    for step in (np.int64(20), np.int32(20), np.uint16(20)):
        assert store.find(step).step == 20
    with pytest.raises(TypeError, match="by its step"):
        store.find(20.0)  # type: ignore[arg-type]


def test_leftovers_are_those_of_interrupted_writes_only(tmp_path):
    fake_checkpoint(tmp_path, "input.ckpt-5")
    fake_checkpoint(tmp_path, "model.ckpt-5")
    (tmp_path / "input.ckpt-5.ended").touch()
    (tmp_path / "input.ckpt-10_temp").mkdir()
    (tmp_path / "input.ckpt-10_temp" / "part-00000-of-00001.index").touch()
    (tmp_path / "input.manual.ckpt-7.index.tmp").touch()  # a copy that failed
    tf_tmp = "checkpoint_input.tmp" + "0" * 31 + "a"
    (tmp_path / tf_tmp).touch()  # TF's state write
    (tmp_path / "input.ckpt-12.data-00000-of-00001").touch()  # killed before its index
    (tmp_path / "input.ckpt-12.ended").touch()
    (tmp_path / "model.ckpt-10_temp").mkdir()  # the model's: not ours
    (tmp_path / "notes.tmp").touch()
    # the state file's temporary of a write_text killed before its rename, and of a live one
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "from nbhooks.atomic import temporary; print(temporary('checkpoint_input'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    alive = temporary("checkpoint_input")
    (tmp_path / dead).touch()
    (tmp_path / alive).touch()  # this process: maybe writing
    store = PipelineStore(tmp_path)
    expected = [
        dead,
        tf_tmp,
        "input.ckpt-10_temp",
        "input.ckpt-12.data-00000-of-00001",
        "input.ckpt-12.ended",
        "input.manual.ckpt-7.index.tmp",
    ]
    assert [p.name for p in store.leftovers()] == sorted(expected)
    assert [p.name for p in store.clean_leftovers()] == sorted(expected)
    assert store.leftovers() == []
    left = sorted(p.name for p in tmp_path.iterdir())
    assert "input.ckpt-5.ended" in left and "model.ckpt-10_temp" in left
    assert alive in left and "notes.tmp" in left
    assert [c.step for c in store.list()] == [5]


def test_a_failed_copy_leaves_no_temporary_or_partial_files(tmp_path, monkeypatch):
    fake_checkpoint(tmp_path, "input.ckpt-4", size=100)
    store = PipelineStore(tmp_path)
    real_copy = shutil.copyfile

    def copy_then_fail(src, dst, *args, **kwargs):
        if str(src).endswith(".index"):
            Path(dst).write_bytes(b"part")  # half written, then the disk is full
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        store.pin(store.find(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "input.ckpt-4.data-00000-of-00001",
        "input.ckpt-4.index",
    ]


def test_only_the_sole_writer_may_clean(tmp_path):
    store, other = PipelineStore(tmp_path), PipelineStore(tmp_path)
    assert store.lock is other.lock  # one directory, one lock
    started, release = threading.Event(), threading.Event()
    results: list[bool] = []

    def write() -> None:
        results.append(other.begin_writing())
        started.set()
        release.wait(30)
        other.end_writing()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert started.wait(30)
        assert store.begin_writing() is False  # a live session elsewhere writes here
    finally:
        release.set()
        thread.join(30)
    assert results == [True]
    assert store.begin_writing() is True  # again from this thread: replaces the earlier one
    store.end_writing()


def test_a_missing_checkpoint_is_still_refused_by_name(tmp_path):
    fake_checkpoint(tmp_path, "input.ckpt-5")
    store = PipelineStore(tmp_path)
    with pytest.raises(PipelineCheckpointError, match=r"no pipeline checkpoint at step 6 .*5"):
        store.find(np.int64(6))


def test_each_task_of_several_workers_has_its_own_files(tmp_path):
    """TensorFlow's per-task names: a store lists, rotates and cleans only its task's files."""
    for name in ("input.ckpt-5", "input_chief_0.ckpt-5", "input_worker_1.ckpt-7"):
        fake_checkpoint(tmp_path, name)
    fake_checkpoint(tmp_path, "input_worker_1.ckpt-9")
    (tmp_path / "input_chief_0.ckpt-8.data-00000-of-00001").write_bytes(b"killed")
    (tmp_path / "input_worker_1.ckpt-10.data-00000-of-00001").write_bytes(b"killed")
    (tmp_path / "checkpoint_input_worker_1").write_text(
        'model_checkpoint_path: "input_worker_1.ckpt-9"\n'
    )
    chief, worker = (
        PipelineStore(tmp_path, task="chief:0"),
        PipelineStore(tmp_path, task="worker:1"),
    )
    single = PipelineStore(tmp_path)
    assert [c.name for c in chief.list()] == ["input_chief_0.ckpt-5"]
    assert [c.name for c in worker.list()] == ["input_worker_1.ckpt-7", "input_worker_1.ckpt-9"]
    assert [c.name for c in single.list()] == ["input.ckpt-5"]
    assert worker.latest() == worker.find(9) and chief.latest() is None
    assert worker.state_file.name == "checkpoint_input_worker_1"
    assert worker.path("manual", 3) == str(tmp_path / "input_worker_1.manual.ckpt-3")
    assert [p.name for p in worker.clean_leftovers()] == [
        "input_worker_1.ckpt-10.data-00000-of-00001"
    ]
    assert [p.name for p in chief.leftovers()] == ["input_chief_0.ckpt-8.data-00000-of-00001"]
    with pytest.raises(
        PipelineCheckpointError, match="not a pipeline checkpoint name of this task"
    ):
        worker.find("input_chief_0.ckpt-5")
    pinned = worker.pin(worker.find(7))
    assert pinned.name == "input_worker_1.manual.ckpt-7"
    assert [c.name for c in single.list()] == ["input.ckpt-5"]  # untouched by the others


def test_names_tell_their_task():
    assert basename(None) == "input" and basename("worker:12") == "input_worker_12"
    assert parse_any("input.ckpt-3") == (None, "auto", 3)
    assert parse_any("input_worker_1.manual.ckpt-40") == ("worker:1", "manual", 40)
    assert parse_any("input_chief_0.ckpt-7") == ("chief:0", "auto", 7)
    assert parse_any("model.ckpt-7") is None and parse_any("input_worker.ckpt-7") is None
    with pytest.raises(ValueError, match="'<type>:<index>'"):
        PipelineStore(".", task="worker-1")
