"""File bookkeeping for input-pipeline checkpoints (no TensorFlow, no widgets).

A checkpoint is a TensorFlow V2 checkpoint prefix inside ``model_dir``: ``input.ckpt-N``
(automatic, written at RunConfig's interval) or ``input.manual.ckpt-N`` (asked for by a
person). Its ``.index`` file is written last, but in place (TensorFlow's ``MergeBundles``), so
a save killed while writing it leaves an index cut short: a prefix is complete once its index
is whole (:func:`whole_index`), and a cut one is a leftover like the data files of a save
killed earlier.
The ``checkpoint_input`` state file names the checkpoint the next ``train()`` restores, by a
path relative to ``model_dir`` (as TensorFlow's own ``checkpoint`` file does), so a moved or
copied ``model_dir`` resumes exactly; absolute paths written by older versions are read by
their name inside ``model_dir``. An empty ``<prefix>.ended`` file next to a checkpoint says
that its position is at the end of a finite input. The files are the only truth: nothing is
cached, so a crash leaves nothing to reconcile beyond the leftovers :meth:`clean_leftovers`
removes.

In a job of several workers each task saves its own position, under TensorFlow's per-task
names: ``input_<type>_<index>.ckpt-N`` (``input_worker_1.ckpt-120``) with its own state file
``checkpoint_input_<type>_<index>``. A store handles the files of one task (``task``);
:func:`parse_any` tells the task of any input checkpoint name.
"""

from __future__ import annotations

import builtins
import functools
import numbers
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nbhooks.atomic import write_text
from nbhooks.checks import check_int

Kind = Literal["auto", "manual"]
BASENAME = "input"  #: TensorFlow's name of a single worker's input checkpoints
STATE_FILE = "checkpoint_input"
#: First line of a state file written by restore(): resume exactly there.
CHOSEN_MARK = "# chosen with restore(): the next train() resumes exactly here"
ENDED = ".ended"  #: suffix of the marker file: the position is at the end of a finite input
_TASK = re.compile(r"^([a-z]+(?:_[a-z]+)*):(\d+)$")
_ANY_NAME = re.compile(
    r"^input(?:_(?P<type>[a-z]+(?:_[a-z]+)*)_(?P<index>\d+))?(?P<manual>\.manual)?"
    r"\.ckpt-(?P<step>\d+)$"
)
_STATE_LINE = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.MULTILINE)
#: The last bytes of a whole ``.index``: TensorFlow writes it as a LevelDB-format table, whose
#: footer, written last, ends with this magic number (``kTableMagicNumber`` of
#: tensorflow/core/lib/io/format.h, little-endian).
INDEX_END = (0xDB4775248B80FB57).to_bytes(8, "little")


def whole_index(path: str | os.PathLike[str], opener: Callable[..., Any] = open) -> bool:
    """True when the ``.index`` file at ``path`` was written to its end (False when missing,
    a folder, or cut short). ``opener`` opens it for binary reading (``open``, or
    ``tf.io.gfile.GFile`` for other filesystems); its own errors propagate."""
    try:
        with opener(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size < len(INDEX_END):
                return False
            f.seek(size - len(INDEX_END))
            return bytes(f.read(len(INDEX_END))) == INDEX_END
    except OSError:
        return False


class PipelineCheckpointError(RuntimeError):
    """A pipeline checkpoint action failed; the message says what and how to fix it."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One saved pipeline position: the iterator state after global step ``step``."""

    step: int
    kind: Kind
    path: str  # the checkpoint prefix (what tf.train.Saver.restore takes)
    size_bytes: int
    saved_at: float

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def basename(task: str | None) -> str:
    """TensorFlow's name of a task's input checkpoints: ``None`` -> ``"input"`` (one worker),
    ``"worker:1"`` -> ``"input_worker_1"`` (one of several)."""
    if task is None:
        return BASENAME
    match = _TASK.match(task)
    if match is None:
        raise ValueError(f"task must be '<type>:<index>' such as 'worker:1', got {task!r}")
    return f"{BASENAME}_{match[1]}_{match[2]}"


def parse_any(name: str) -> tuple[str | None, Kind, int] | None:
    """The task (None for a single worker's), kind and step of any input checkpoint name:
    ``"input_worker_1.ckpt-12"`` -> ``("worker:1", "auto", 12)``; None for other names."""
    match = _ANY_NAME.match(name)
    if match is None:
        return None
    task = None if match["type"] is None else f"{match['type']}:{int(match['index'])}"
    kind: Kind = "manual" if match["manual"] else "auto"
    return task, kind, int(match["step"])


class _Names:
    """The file names of one task's input checkpoints (see :func:`basename`)."""

    def __init__(self, task: str | None) -> None:
        base = basename(task)
        b = re.escape(base)
        self.task = task
        self.state_file = f"checkpoint_{base}"
        self.prefixes: dict[Kind, str] = {"auto": f"{base}.ckpt", "manual": f"{base}.manual.ckpt"}
        self.glob = f"{base}*.ckpt-*.index"
        self.name = re.compile(rf"^({b}(?:\.manual)?\.ckpt)-(\d+)$")
        #: What interrupted writes leave: a sharded save's shard folder, a copy's or a state
        #: file's temporary file (ours, from :mod:`nbhooks.atomic`, and TensorFlow's
        #: ``checkpoint_input.tmp<hex>``).
        self.temp_dir = re.compile(rf"^{b}(?:\.manual)?\.ckpt-\d+_temp$")
        self.temp_file = re.compile(
            rf"^(?:{b}(?:\.manual)?\.ckpt-\d+\..+\.tmp"
            rf"|checkpoint_{b}\.tmp[0-9a-f]{{32}}"
            rf"|\.checkpoint_{b}\.(?P<pid>\d+)\.\d+(?:\.[0-9a-f]{{8}})?\.tmp)$"
        )

    def parse(self, name: str) -> tuple[Kind, int] | None:
        match = self.name.match(name)
        if match is None:
            return None
        kind: Kind = "manual" if match.group(1) == self.prefixes["manual"] else "auto"
        return kind, int(match.group(2))


_SINGLE = _Names(None)


def parse_name(name: str) -> tuple[Kind, int] | None:
    """``"input.manual.ckpt-12"`` -> ``("manual", 12)``; None for other names (a single
    worker's; :func:`parse_any` reads every task's)."""
    return _SINGLE.parse(name)


class _Directory:
    """What every store of one task's files shares in this process: a lock and its writers."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.writers: dict[int, threading.Thread] = {}  # thread id -> training thread


_DIRECTORIES: dict[tuple[Path, str | None], _Directory] = {}
_DIRECTORIES_LOCK = threading.Lock()


def _directory(path: Path, task: str | None) -> _Directory:
    with _DIRECTORIES_LOCK:
        return _DIRECTORIES.setdefault((path, task), _Directory())


class PipelineStore:
    """The pipeline checkpoints of one ``model_dir``: list, find, pin, rotate, delete, point at.

    Thread-safe: the training thread (rotation after a save) and the notebook (delete, pin,
    restore while idle) may use it at once; stores of the same task's files share one lock.
    ``task``: the files of that task of a job of several workers (``"worker:1"``; see
    :func:`basename`), None for a single worker's. A store never touches another task's files.
    """

    def __init__(
        self, model_dir: str | os.PathLike[str], keep: int = 5, task: str | None = None
    ) -> None:
        keep = check_int("keep", keep, hint="checkpoints kept per kind")
        self.names = _Names(task)
        self.task = task
        self.dir = Path(model_dir).resolve()
        self.keep = keep
        self.state_file = self.dir / self.names.state_file
        self._shared = _directory(self.dir, task)
        self.lock = self._shared.lock

    # -- reading ---------------------------------------------------------------------------
    def list(self) -> builtins.list[Checkpoint]:
        """Every complete checkpoint, oldest step first (auto before manual at equal steps)."""
        if not self.dir.is_dir():
            return []
        found = [self._describe(p) for p in self.dir.glob(self.names.glob)]
        return sorted((c for c in found if c), key=lambda c: (c.step, c.kind, c.saved_at))

    def _describe(self, index: Path) -> Checkpoint | None:
        prefix = index.with_suffix("")
        parsed = self.names.parse(prefix.name)
        if parsed is None or not whole_index(index):
            return None
        try:
            size = sum(f.stat().st_size for f in self._files(prefix))
            saved_at = index.stat().st_mtime
        except FileNotFoundError:  # deleted while we looked
            return None
        return Checkpoint(parsed[1], parsed[0], str(prefix), size, saved_at)

    def _files(self, prefix: Path) -> Iterator[Path]:
        yield from prefix.parent.glob(glob_escape(prefix.name) + ".*")

    def latest(self) -> Checkpoint | None:
        """The checkpoint the next ``train()`` restores (from the state file), if any."""
        path = self.state_path()
        return None if path is None else self._describe(Path(path + ".index"))

    def chosen(self) -> bool:
        """True while the state file names a checkpoint chosen with :meth:`point_at`."""
        try:
            return self.state_file.read_text().startswith(CHOSEN_MARK)
        except FileNotFoundError:
            return False

    def has_state_file(self) -> bool:
        """True when a state file exists (even one that names nothing readable)."""
        return self.state_file.is_file()

    def state_path(self) -> str | None:
        """The prefix the state file names (it may be missing on disk), or None."""
        try:
            text = self.state_file.read_text()
        except FileNotFoundError:
            return None
        match = _STATE_LINE.search(text)
        if match is None:
            return None
        path = Path(match.group(1))
        if path.is_absolute() and self.names.parse(path.name) is not None:
            path = Path(path.name)  # written before model_dir was moved or copied
        return str(path if path.is_absolute() else self.dir / path)

    def find(self, target: int | str | os.PathLike[str] | None) -> Checkpoint:
        """Resolve a step, a name or a path (inside model_dir) to one existing checkpoint.

        ``None`` means the latest (the one the state file names, else the highest step).
        At a step saved twice (auto and manual: the same position) the manual one wins.
        """
        with self.lock:
            checkpoints = self.list()
            if target is None:
                found = self.latest() or (checkpoints[-1] if checkpoints else None)
                if found is None:
                    raise PipelineCheckpointError(
                        f"no pipeline checkpoint in {self.dir} yet: train first, or save one"
                    )
                return found
            if isinstance(target, numbers.Integral) and not isinstance(target, bool):
                return self._find_step(int(target), checkpoints)
            if not isinstance(target, str | os.PathLike):
                raise TypeError(
                    f"a checkpoint is named by its step (int), name or path, got {target!r}"
                )
            return self._find_path(self.inside(target), checkpoints)

    def _find_step(self, step: int, checkpoints: builtins.list[Checkpoint]) -> Checkpoint:
        matches = [c for c in checkpoints if c.step == step]
        if not matches:
            steps = ", ".join(str(c.step) for c in checkpoints) or "none"
            raise PipelineCheckpointError(
                f"no pipeline checkpoint at step {step} in {self.dir} (saved steps: {steps})"
            )
        return matches[-1]

    def _find_path(self, prefix: Path, checkpoints: builtins.list[Checkpoint]) -> Checkpoint:
        for checkpoint in checkpoints:
            if Path(checkpoint.path) == prefix:
                return checkpoint
        raise PipelineCheckpointError(
            f"pipeline checkpoint {prefix} not found: no {prefix.name}.index in {self.dir} "
            f"(see .checkpoints for the saved ones)"
        )

    def inside(self, target: str | os.PathLike[str]) -> Path:
        """``target`` as a checkpoint prefix in model_dir; refuses anything outside it."""
        path = Path(target)
        path = (path if path.is_absolute() else self.dir / path).resolve()
        if path.name.endswith(".index"):
            path = path.with_suffix("")
        if path.parent != self.dir:
            raise PipelineCheckpointError(
                f"refusing {target!s}: pipeline checkpoints must be in model_dir {self.dir}"
            )
        if self.names.parse(path.name) is None:
            auto, manual = self.names.prefixes["auto"], self.names.prefixes["manual"]
            raise PipelineCheckpointError(
                f"{path.name!r} is not a pipeline checkpoint name of this task "
                f"(expected {auto}-<step> or {manual}-<step>)"
            )
        return path

    # -- writing ---------------------------------------------------------------------------
    def prefix(self, kind: Kind) -> str:
        """The save path to give ``Saver.save(..., global_step=step)`` for ``kind``."""
        return str(self.dir / self.names.prefixes[kind])

    def path(self, kind: Kind, step: int) -> str:
        """Where ``Saver.save(prefix(kind), global_step=step)`` writes: ``<prefix>-<step>``."""
        return f"{self.prefix(kind)}-{step}"

    def point_at(self, checkpoint: Checkpoint) -> None:
        """Make ``checkpoint`` the one the next ``train()`` restores (atomic state-file write).

        The state file then starts with :data:`CHOSEN_MARK` (a text-proto comment TensorFlow
        skips; its next automatic save rewrites the file without it): a position a person
        chose is restored as it is, never caught up with the model's step. Pointing at the
        checkpoint the state file already names changes nothing (a crash is still caught up).
        """
        with self.lock:
            if self.state_path() == checkpoint.path:
                return
            names = [c.name for c in self.list() if c.kind == "auto" and c.path != checkpoint.path]
            lines = [CHOSEN_MARK, f'model_checkpoint_path: "{checkpoint.name}"']
            lines += [f'all_model_checkpoint_paths: "{n}"' for n in [*names, checkpoint.name]]
            write_text(self.state_file, "\n".join(lines) + "\n")

    def pin(self, checkpoint: Checkpoint) -> Checkpoint:
        """Copy ``checkpoint`` as a manual one (kept apart from automatic rotation)."""
        target = Path(self.path("manual", checkpoint.step))
        if checkpoint.kind == "manual":
            return checkpoint
        with self.lock:
            source = Path(checkpoint.path)
            files = sorted(self._files(source), key=lambda f: f.suffix == ".index")
            copied: builtins.list[tuple[Path, Path]] = []
            try:
                for src in files:  # the .index last: the prefix is complete once it exists
                    dst = target.parent / (target.name + src.name[len(source.name) :])
                    copied.append((dst.with_name(dst.name + ".tmp"), dst))
                    shutil.copyfile(src, copied[-1][0])  # a full disk fails here, or below
                for tmp, dst in copied:
                    os.replace(tmp, dst)
            except BaseException:
                for _, dst in reversed(copied):  # the .index first: never listed half-copied
                    dst.unlink(missing_ok=True)
                raise
            finally:
                for tmp, _ in copied:
                    tmp.unlink(missing_ok=True)
            pinned = self._describe(Path(str(target) + ".index"))
        if pinned is None:
            raise PipelineCheckpointError(f"could not pin {checkpoint.path}: its files vanished")
        return pinned

    def deletable(self, checkpoint: Checkpoint) -> Checkpoint:
        """``checkpoint``, unless it is the one the next ``train()`` restores."""
        if self.state_path() == checkpoint.path:
            raise PipelineCheckpointError(
                f"{checkpoint.name} is where the next train() resumes the pipeline; "
                f"restore another checkpoint first, then delete this one"
            )
        return checkpoint

    def delete(self, checkpoint: Checkpoint, *, force: bool = False) -> None:
        """Remove ``checkpoint``'s files (index first, so a half-deleted one is not listed).

        The checkpoint the next ``train()`` restores is refused unless ``force``.
        """
        with self.lock:
            if not force:
                self.deletable(checkpoint)
            prefix = Path(checkpoint.path)
            for f in sorted(self._files(prefix), key=lambda f: f.suffix != ".index"):
                f.unlink(missing_ok=True)

    def discard_partial(self, prefix: str) -> None:
        """Remove the files a failed save left under ``prefix`` (it was never listed)."""
        for f in self._files(Path(prefix)):
            if f.is_file():
                f.unlink(missing_ok=True)
        shutil.rmtree(prefix + "_temp", ignore_errors=True)  # a sharded save's shard dir

    def ended(self, checkpoint: Checkpoint) -> bool:
        """True when ``checkpoint`` was saved at the end of a finite input."""
        return Path(checkpoint.path + ENDED).is_file()

    def mark_ended(self, checkpoint: Checkpoint, ended: bool = True) -> None:
        """Mark (or unmark) ``checkpoint`` as saved at the end of a finite input."""
        marker = Path(checkpoint.path + ENDED)
        if ended:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    # -- leftovers of interrupted writes ---------------------------------------------------
    def begin_writing(self) -> bool:
        """Register the calling thread as a training session writing here.

        Returns True when no other live thread of this process writes here: the leftovers
        then belong to nobody. A thread runs one session at a time, so an earlier
        registration of the calling thread (a session that crashed) is replaced.
        """
        with self.lock:
            writers = self._shared.writers
            for ident, thread in list(writers.items()):
                if not thread.is_alive():
                    del writers[ident]
            current = threading.current_thread()
            writers[current.ident or 0] = current
            return len(writers) == 1

    def end_writing(self) -> None:
        """The calling thread's session ended."""
        with self.lock:
            self._shared.writers.pop(threading.get_ident(), None)

    def leftovers(self) -> builtins.list[Path]:
        """Files and folders that interrupted writes left behind (nothing any checkpoint uses).

        Shard folders (``input.ckpt-N_temp``), temporary files of copies and of state-file
        writes (unless the process that writes them is alive), and the data files or markers
        of a prefix whose ``.index`` is missing or cut short, and that index (a save killed
        before it completed).
        """
        if not self.dir.is_dir():
            return []
        found: builtins.list[Path] = []
        unfinished = functools.cache(self._unfinished)  # one index read per prefix
        for entry in self.dir.iterdir():
            name = entry.name
            if self.names.temp_dir.match(name) and entry.is_dir():
                found.append(entry)
            elif match := self.names.temp_file.match(name):
                pid = match.group("pid")
                if pid is None or not _alive(int(pid)):
                    found.append(entry)
            elif (prefix := _prefix_of(name)) and entry.is_file() and unfinished(prefix):
                found.append(entry)
        return sorted(found)

    def _unfinished(self, prefix: str) -> bool:
        """True for one of this task's prefixes whose index is missing or cut short."""
        return self.names.parse(prefix) is not None and not whole_index(
            self.dir / f"{prefix}.index"
        )

    def clean_leftovers(self) -> builtins.list[Path]:
        """Remove :meth:`leftovers`; call only when no save is in progress (see
        :meth:`begin_writing`). Returns what was removed."""
        with self.lock:
            removed = []
            for path in self.leftovers():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
            return removed

    def rotate(self, kind: Kind) -> builtins.list[Checkpoint]:
        """Delete the oldest checkpoints of ``kind`` beyond ``keep``; returns the deleted ones."""
        with self.lock:
            protected = self.state_path()
            same = [c for c in self.list() if c.kind == kind and c.path != protected]
            limit = self.keep - (protected is not None and self._kind_of(protected) == kind)
            doomed = same[: max(len(same) - limit, 0)]
            for checkpoint in doomed:
                self.delete(checkpoint, force=True)
            return doomed

    def _kind_of(self, path: str) -> Kind | None:
        parsed = self.names.parse(os.path.basename(path))
        return None if parsed is None else parsed[0]


def _prefix_of(name: str) -> str | None:
    """The checkpoint prefix of a file it is made of (data, index, ended marker), else None."""
    prefix, _, rest = name.partition(".data-")
    if rest:
        return prefix
    for suffix in (".index", ENDED):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # ours: another thread may be writing it (under the lock we do not hold)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)
