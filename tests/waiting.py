"""Polling with a deadline (tests never sleep to wait for a thread)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.01
) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.1 s until it is true; fail the test, naming ``what``, after
    ``timeout`` seconds."""
    if not wait_for(predicate, timeout, interval=0.1):
        pytest.fail(f"not within {timeout} s: {what}")
