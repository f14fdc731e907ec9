"""Files written whole or not at all: a temporary file beside the target, renamed over it."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

__all__ = ["temporary", "write_text"]


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path``, a local path or a TensorFlow file system URL
    (``gs://...``), through a temporary file in the same folder and a rename: a reader sees
    the old file or the new one, never half of one. The folder is made if missing. A failure
    (a full disk) raises OSError naming ``path``, leaves the old file as it was and no
    temporary file."""
    target = os.fspath(path)
    tmp = temporary(target)
    try:
        if "://" in target:
            _write_remote(tmp, target, text)
        else:
            _write_local(Path(tmp), target, text)
    except OSError as exc:
        message = (
            f"could not write {target} ({exc.strerror or exc}); any file there before is as it was"
        )
        raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc


def temporary(path: str) -> str:
    """The temporary file :func:`write_text` writes ``path`` through: ``.<name>.<pid>.<thread
    id>.<8 hex digits>.tmp`` in the same folder (a leftover of a killed process is known by its
    pid)."""
    folder, slash, name = path.rpartition("/")
    return (
        f"{folder}{slash}.{name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}.tmp"
    )


def _write_local(tmp: Path, target: str, text: str) -> None:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_remote(tmp: str, target: str, text: str) -> None:
    from nbhooks._tf import tf

    gfile = tf().io.gfile
    try:
        folder = tmp.rsplit("/", 1)[0]
        if not gfile.isdir(folder):
            gfile.makedirs(folder)
        with gfile.GFile(tmp, "w") as f:
            f.write(text)
        gfile.rename(tmp, target, overwrite=True)
    except tf().errors.OpError as exc:
        raise OSError(exc.message) from exc
    finally:
        if gfile.exists(tmp):
            gfile.remove(tmp)
