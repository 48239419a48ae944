"""Waiting for AWS to reach a status: one loop, an injectable interval, a spinner's hook.

Tests pass `poll_interval=0` so nothing sleeps for real; the emulator moves a resource one
status per Describe call (see dogclf/local/moto_ext/sagemaker_lifecycle.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TypeVar

from dogclf.errors import AwsError

T = TypeVar("T")
# How aws/ tells the user something without printing: the command passes render.note/warn.
Report = Callable[[str], None]


def ignore(message: str) -> None:
    """The default Report: library callers that pass none hear nothing."""


def wait_until(
    describe: Callable[[], T],
    status_of: Callable[[T], str],
    final: Collection[str],
    *,
    what: str,
    poll_interval: float = 15.0,
    timeout: float | None = None,
    on_poll: Callable[[T], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Describe until the status is one of `final`; returns the last description."""
    started = time.monotonic()
    while True:
        current = describe()
        if on_poll is not None:
            on_poll(current)
        if status_of(current) in final:
            return current
        if timeout is not None and time.monotonic() - started > timeout:
            raise AwsError(
                f"gave up waiting for {what} after {timeout:.0f} s (status {status_of(current)})",
                "it keeps going on AWS; check later with `dogclf status`",
            )
        sleep(poll_interval)
