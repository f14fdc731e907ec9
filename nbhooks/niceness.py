"""Background work that takes only the CPU training leaves idle: the calling thread's nice
value raised (Linux), inherited by the threads it starts (a session's thread pool among them)."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("nbhooks")

#: How much nicer than training nbhooks' background threads run: 19, the lowest priority (such
#: a thread gets under 2 % of a core a nice-0 thread wants, and all of an idle one; measured on
#: the 3x128 model of bench_dashboard.py, nice 19 cost less than nice 10, and that less than 0).
BACKGROUND = 19


def lower_this_thread(by: int = BACKGROUND) -> bool:
    """Raise the calling thread's nice value by ``by``; True when done. Linux only: there a
    thread's nice value is its own (elsewhere ``setpriority`` would lower the whole process).
    Without privileges a thread cannot take it back: call it on threads made for the work."""
    if by <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + by)
    except OSError as exc:  # a sandbox that forbids it: the work runs at training's priority
        log.debug("nbhooks: could not lower a background thread's priority: %s", exc)
        return False
    return True
