"""File bookkeeping for input-pipeline checkpoints (no TensorFlow, no widgets).

A checkpoint is a TensorFlow V2 checkpoint prefix inside ``model_dir``: ``input.ckpt-N``
(automatic, written at RunConfig's interval) or ``input.manual.ckpt-N`` (asked for by a
person). Its ``.index`` file is written last, so a prefix whose index exists is complete.
The ``checkpoint_input`` state file names the checkpoint the next ``train()`` restores.
The files are the only truth: nothing is cached, so a crash leaves nothing to reconcile.
"""

from __future__ import annotations

import numbers
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nbhooks.checks import check_int

Kind = Literal["auto", "manual"]
STATE_FILE = "checkpoint_input"
#: First line of a state file written by restore(): resume exactly there.
CHOSEN_MARK = "# chosen with restore(): the next train() resumes exactly here"
PREFIXES: dict[Kind, str] = {"auto": "input.ckpt", "manual": "input.manual.ckpt"}
_NAME = re.compile(r"^(input(?:\.manual)?\.ckpt)-(\d+)$")
_STATE_LINE = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.MULTILINE)


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


def parse_name(name: str) -> tuple[Kind, int] | None:
    """``"input.manual.ckpt-12"`` -> ``("manual", 12)``; None for other names."""
    match = _NAME.match(name)
    if match is None:
        return None
    kind: Kind = "manual" if match.group(1) == PREFIXES["manual"] else "auto"
    return kind, int(match.group(2))


class PipelineStore:
    """The pipeline checkpoints of one ``model_dir``: list, find, pin, rotate, delete, point at.

    Thread-safe: the training thread (rotation after a save) and the notebook (delete, pin,
    restore while idle) may use it at once.
    """

    def __init__(self, model_dir: str | os.PathLike[str], keep: int = 5) -> None:
        keep = check_int("keep", keep, hint="checkpoints kept per kind")
        self.dir = Path(model_dir).resolve()
        self.keep = keep
        self.lock = threading.RLock()

    # -- reading ---------------------------------------------------------------------------
    def list(self) -> list[Checkpoint]:
        """Every complete checkpoint, oldest step first (auto before manual at equal steps)."""
        if not self.dir.is_dir():
            return []
        found = [self._describe(p) for p in self.dir.glob("input*.ckpt-*.index")]
        return sorted((c for c in found if c), key=lambda c: (c.step, c.kind, c.saved_at))

    def _describe(self, index: Path) -> Checkpoint | None:
        prefix = index.with_suffix("")
        parsed = parse_name(prefix.name)
        if parsed is None or not index.is_file():
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
            return (self.dir / STATE_FILE).read_text().startswith(CHOSEN_MARK)
        except FileNotFoundError:
            return False

    def state_path(self) -> str | None:
        """The prefix the state file names (it may be missing on disk), or None."""
        try:
            text = (self.dir / STATE_FILE).read_text()
        except FileNotFoundError:
            return None
        match = _STATE_LINE.search(text)
        if match is None:
            return None
        path = Path(match.group(1))
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

    def _find_step(self, step: int, checkpoints: list[Checkpoint]) -> Checkpoint:
        matches = [c for c in checkpoints if c.step == step]
        if not matches:
            steps = ", ".join(str(c.step) for c in checkpoints) or "none"
            raise PipelineCheckpointError(
                f"no pipeline checkpoint at step {step} in {self.dir} (saved steps: {steps})"
            )
        return matches[-1]

    def _find_path(self, prefix: Path, checkpoints: list[Checkpoint]) -> Checkpoint:
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
        if parse_name(path.name) is None:
            raise PipelineCheckpointError(
                f"{path.name!r} is not a pipeline checkpoint name "
                f"(expected input.ckpt-<step> or input.manual.ckpt-<step>)"
            )
        return path

    # -- writing ---------------------------------------------------------------------------
    def prefix(self, kind: Kind) -> str:
        """The save path to give ``Saver.save(..., global_step=step)`` for ``kind``."""
        return str(self.dir / PREFIXES[kind])

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
            paths = [c.path for c in self.list() if c.kind == "auto" and c.path != checkpoint.path]
            lines = [CHOSEN_MARK, f'model_checkpoint_path: "{checkpoint.path}"']
            lines += [f'all_model_checkpoint_paths: "{p}"' for p in [*paths, checkpoint.path]]
            atomic_write(self.dir / STATE_FILE, "\n".join(lines) + "\n")

    def pin(self, checkpoint: Checkpoint) -> Checkpoint:
        """Copy ``checkpoint`` as a manual one (kept apart from automatic rotation)."""
        target = Path(self.path("manual", checkpoint.step))
        if checkpoint.kind == "manual":
            return checkpoint
        with self.lock:
            source = Path(checkpoint.path)
            files = sorted(self._files(source), key=lambda f: f.suffix == ".index")
            copied: list[tuple[Path, Path]] = []
            try:
                for src in files:  # the .index last: the prefix is complete once it exists
                    dst = target.parent / (target.name + src.name[len(source.name) :])
                    tmp = dst.with_name(dst.name + ".tmp")
                    shutil.copyfile(src, tmp)
                    copied.append((tmp, dst))
                for tmp, dst in copied:
                    os.replace(tmp, dst)
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

    def rotate(self, kind: Kind) -> list[Checkpoint]:
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
        parsed = parse_name(os.path.basename(path))
        return None if parsed is None else parsed[0]


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
