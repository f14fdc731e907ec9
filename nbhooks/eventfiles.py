"""Incremental reading of TensorFlow event files, through TensorBoard's own reader (headless).

Each file gets one TensorBoard ``RawEventFileLoader``, which keeps its offset: every poll reads
only the records added since the last one (a record still being written is read once it is
complete). The reader counts the bytes of the records it was given, so it can tell a record
that is not complete yet from one that is complete on disk but does not check out:

- a corrupt record (the file holds the whole record, its checksum fails, or it does not parse
  as an Event) stops that file at once, with one warning;
- an incomplete record on a file that has not grown for ``truncated_after`` seconds (its writer
  died mid-record) is skipped, with one warning; if the file grows later, reading goes on.

All file access goes through ``tf.io.gfile`` (TensorBoard's reader does too).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nbhooks._tf import tf

log = logging.getLogger("nbhooks")

EVENTS_GLOB = "events.out.tfevents.*"
_HEADER = 12  # uint64 length + uint32 masked crc of the length
_FOOTER = 4  # uint32 masked crc of the data
_HEAD = 96  # the first two records' starts: the second event's wall time differs per writer


@dataclass(frozen=True, slots=True)
class Scalar:
    """One scalar summary value read from an event file."""

    step: int
    tag: str
    value: float
    wall_time: float


def _loader_class() -> Any:
    tf()  # TensorFlow first, imported and quieted the nbhooks way
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader

    return RawEventFileLoader


def _event_class() -> Any:
    from tensorboard.compat.proto.event_pb2 import Event

    return Event


def scalars_of(event: Any) -> Iterator[Scalar]:
    """The scalar values of an Event: ``simple_value`` (TF1 summaries, the Estimator's
    evaluations) or a numeric one-element tensor (TF2 summaries)."""
    if not event.HasField("summary"):
        return
    for value in event.summary.value:
        number: float | None = None
        if value.HasField("simple_value"):
            number = float(value.simple_value)
        elif value.HasField("tensor"):
            from tensorboard.util.tensor_util import make_ndarray

            try:
                array = make_ndarray(value.tensor)
            except Exception:
                continue
            if array.size == 1 and array.dtype.kind in "fiub":
                number = float(array.reshape(()))
        if number is not None:
            yield Scalar(int(event.step), value.tag, number, float(event.wall_time))


class EventFileReader:
    """One event file, read incrementally. :meth:`read` returns the Events added since the last
    call (each Event once). ``warn`` receives one message per file that is skipped."""

    def __init__(
        self,
        path: str,
        *,
        truncated_after: float = 300.0,
        warn: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.truncated_after = truncated_after
        self._warn = warn or (lambda message: log.warning("nbhooks: %s", message))
        self._clock = clock
        self._loader: Any = None
        self.offset = 0  #: bytes of complete records read so far
        self.size = 0  #: the file's size at the last read
        self._grew_at = clock()
        self.corrupt = False  #: True once a corrupt record was met: the file is read no more
        self.truncated = False  #: True while an incomplete record is skipped as truncated
        self.events_read = 0
        self._head = b""  #: the file's first bytes, as first read

    def read(self) -> list[Any]:
        """The Events written since the last call; [] once the file is known to be corrupt."""
        if self.corrupt:
            return []
        t = tf()
        try:
            size = int(t.io.gfile.stat(self.path).length)
        except t.errors.OpError:
            return []  # gone (or not readable right now): nothing new
        if size < self.size or self._rewritten():  # a new file of the same name: afresh
            self._loader, self.offset, self._head = None, 0, b""
        if size != self.size:
            self.size, self._grew_at = size, self._clock()
            self.truncated = False
        if size <= self.offset:
            return []
        events: list[Any] = []
        try:
            if self._loader is None:
                self._loader = _loader_class()(self.path, detect_file_replacement=True)
            event_class = _event_class()
            for record in self._loader.Load():
                self.offset += _HEADER + len(record) + _FOOTER
                events.append(event_class.FromString(record))
        except Exception as exc:  # a record that does not parse, an unreadable file...
            self._skip(
                f"event file {self.path} is corrupt at byte {self.offset} ({exc}); "
                "skipped the rest of it"
            )
            return events
        self.events_read += len(events)
        if self.offset < size:
            self._check_rest(size)
        return events

    def _rewritten(self) -> bool:
        """Whether the file was written anew under its name since the last read, though not
        shorter (a writer restarted within the same second reuses the name): its first bytes
        differ from those read before. The first event's wall time is whole seconds (as the
        name); the second's, within the first 96 bytes, has the writer's fraction of them."""
        head = self._read_at(0, _HEAD)
        if not self._head:
            self._head = head if len(head) == _HEAD else b""
            return False
        return head != self._head

    def _read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes of the file from ``offset`` (b"" if it cannot be read now)."""
        t = tf()
        try:
            with t.io.gfile.GFile(self.path, "rb") as f:
                f.seek(offset)
                data: bytes = f.read(n)
                return data
        except t.errors.OpError:
            return b""

    def _check_rest(self, size: int) -> None:
        """Bytes remain that the loader did not return: incomplete, truncated or corrupt."""
        need = self._record_length(size)
        if need is not None and self.offset + need <= size:
            self._skip(
                f"event file {self.path} holds a corrupt record at byte {self.offset} "
                f"(its checksum fails); skipped the rest of it ({size - self.offset} bytes)"
            )
        elif not self.truncated and self._clock() - self._grew_at >= self.truncated_after:
            self.truncated = True
            self._warn(
                f"event file {self.path} ends in an incomplete record ({size - self.offset} "
                f"bytes at byte {self.offset}) and has not grown for {self.truncated_after:g} s: "
                "skipped as truncated (read on if it grows)"
            )

    def _record_length(self, size: int) -> int | None:
        """The full length of the record at :attr:`offset`, from its header (None if the
        header itself is not all there)."""
        if size - self.offset < _HEADER:
            return None
        header = self._read_at(self.offset, _HEADER)
        if len(header) < _HEADER:
            return None
        (length,) = struct.unpack("<Q", header[:8])
        return int(_HEADER + length + _FOOTER)

    def _skip(self, message: str) -> None:
        self.corrupt = True
        self._warn(message)


class EventDirReader:
    """Every event file of one directory (not its subdirectories), new files picked up as they
    appear (a restarted job writes a new one), vanished ones dropped."""

    def __init__(
        self,
        directory: str,
        *,
        truncated_after: float = 300.0,
        warn: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory.rstrip("/")
        self._options: dict[str, Any] = {
            "truncated_after": truncated_after,
            "warn": warn,
            "clock": clock,
        }
        self.files: dict[str, EventFileReader] = {}

    def read(self) -> list[Any]:
        """The Events written since the last call, file by file in name (= creation) order."""
        t = tf()
        try:
            paths = sorted(t.io.gfile.glob(f"{self.directory}/{EVENTS_GLOB}"))
        except t.errors.OpError:
            paths = []
        for gone in set(self.files) - set(paths):
            del self.files[gone]
        events: list[Any] = []
        for path in paths:
            reader = self.files.get(path)
            if reader is None:
                reader = self.files[path] = EventFileReader(path, **self._options)
            events.extend(reader.read())
        return events

    def scalars(self) -> list[Scalar]:
        """The scalar values of :meth:`read`."""
        return [s for event in self.read() for s in scalars_of(event)]


def session_start(event: Any) -> int | None:
    """The step of a session-start marker (``SessionLog.START``: values of this step and later
    written before it belong to an abandoned branch, as TensorBoard reads it); None for any
    other Event."""
    from tensorboard.compat.proto.event_pb2 import SessionLog

    if event.HasField("session_log") and event.session_log.status == SessionLog.START:
        return int(event.step)
    return None


def earlier_evaluations(
    directory: str, last_step: int, *, warn: Callable[[str], None] | None = None
) -> list[tuple[int, dict[str, float], float]]:
    """The evaluations an earlier training wrote to ``directory`` (an ``eval_<name>`` folder),
    as TensorBoard shows them: a session-start marker at step P drops the values of step P and
    later written before it (a rewound or restarted training's abandoned branch), and a step
    evaluated again keeps its last evaluation. Steps after ``last_step`` (the checkpoint the
    next training starts from) are left out. Returns (step, metrics, wall time), by step."""
    by_step: dict[int, tuple[dict[str, float], float]] = {}
    for event in EventDirReader(directory, warn=warn).read():
        start = session_start(event)
        if start is not None:
            by_step = {step: kept for step, kept in by_step.items() if step < start}
            continue
        metrics = {scalar.tag: scalar.value for scalar in scalars_of(event)}
        if metrics and event.step <= last_step:
            by_step[int(event.step)] = (metrics, float(event.wall_time))
    return [(step, *by_step[step]) for step in sorted(by_step)]
