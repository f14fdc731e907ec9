"""Polling with a deadline (tests never sleep to wait for a thread)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call ``predicate`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)  # a polling interval, not a wait for an event


def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.01
) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; returns whether it became true."""
    try:
        poll(predicate, timeout, "the predicate", interval)
    except TimeoutError:
        return False
    return True


@contextmanager
def interrupted_when(*predicates: Callable[[], bool]) -> Iterator[None]:
    """For each predicate, once it holds: SIGINT to this process (Python raises
    KeyboardInterrupt in the main thread, as the notebook's interrupt button does in a kernel).
    None is sent after the block ends."""
    leave = threading.Event()

    def send(predicate: Callable[[], bool]) -> None:
        while not leave.is_set():
            if predicate():
                os.kill(os.getpid(), signal.SIGINT)
                return
            leave.wait(0.01)  # a polling interval

    threads = [threading.Thread(target=send, args=(p,), daemon=True) for p in predicates]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        leave.set()
        for thread in threads:
            thread.join()
