"""How much memory is free for new processes: the machine's, or less where a container's
memory cgroup (Binder, Docker, Kubernetes) limits this process. Linux only; elsewhere None."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nbhooks.units import size

__all__ = ["Headroom", "headroom"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a number near 2**63


@dataclass(frozen=True, slots=True)
class Headroom:
    """``available`` bytes free for new processes; ``where``: what limits it ("this machine",
    or "this container (a 2.15 GB memory limit, 1.21 GB in use)")."""

    available: int
    where: str


def headroom() -> Headroom | None:
    """The memory free for new processes, or None where it cannot be read (not Linux)."""
    machine = _machine_available()
    if machine is None:
        return None
    found = Headroom(machine, "this machine")
    for limit, usage, reclaimable in _cgroup_limits():
        free = max(0, limit - usage + reclaimable)
        if free < found.available:
            where = (
                f"this container (a {size(limit)} memory limit, {size(usage - reclaimable)} in use)"
            )
            found = Headroom(free, where)
    return found


def _machine_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _cgroup_limits() -> list[tuple[int, int, int]]:
    """(limit, usage, reclaimable page cache) of each memory cgroup above this process that
    has a limit: cgroup v2 or v1, read from the process's own group up to the root."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, group = parts
        if controllers == "":  # cgroup v2
            found += _limits(_CGROUP_ROOT, group, "memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # cgroup v1
            found += _limits(
                _CGROUP_ROOT / "memory",
                group,
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            )
    return found


def _limits(
    mount: Path, group: str, limit_file: str, usage_file: str, reclaimable_key: str
) -> list[tuple[int, int, int]]:
    found = []
    directory = mount / group.lstrip("/")
    # in a container the group's path is often the host's while the mount is the container's
    # own group: read the mount's root too
    for each in {*_ancestors(directory, mount), mount}:
        try:
            raw = (each / limit_file).read_text().strip()
            if raw == "max" or int(raw) >= _UNLIMITED:
                continue
            usage = int((each / usage_file).read_text())
            reclaimable = _stat(each / "memory.stat").get(reclaimable_key, 0)
        except (OSError, ValueError):
            continue
        found.append((int(raw), usage, reclaimable))
    return found


def _ancestors(directory: Path, mount: Path) -> list[Path]:
    found = []
    while directory != mount and mount in directory.parents:
        found.append(directory)
        directory = directory.parent
    return found


def _stat(path: Path) -> dict[str, int]:
    values = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                values[key] = int(value)
    except OSError:
        pass
    return values
