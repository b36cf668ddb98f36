"""`Background`: a daemon thread that runs one job every so many seconds and soon after it is
woken, logging (not dying of) the job's exceptions. The service's hand-off, its loop step
without traffic and its champion watch each run in one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("retain.service")


class Background:
    """Runs `run` in a daemon thread every `every_s` seconds, and soon after `wake()` (then
    waiting `gather_s` for more to gather); an exception is logged, and the thread goes on."""

    def __init__(
        self, run: Callable[[], Any], *, every_s: float, gather_s: float = 0.0, name: str
    ) -> None:
        self._run = run
        self._every_s, self._gather_s = every_s, gather_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._wake.wait(self._every_s) and not self._stop.is_set() and self._gather_s:
                self._stop.wait(self._gather_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._run()
            except Exception:  # a receiver, disk or store problem must not end the thread
                logger.exception("%s failed; trying again later", self._thread.name)
