"""Blocking work off an actor's thread: a few worker threads, and a pipe that wakes the actor.

thespian runs an actor's handlers on one thread, so a handler that waits on a slow outside
party (an HTTP call that takes seconds) stops the actor answering anyone else. Work given to
:class:`Offload` runs on its threads instead; each finished piece writes one byte to a pipe the
actor watches (thespian's ``ThespianWatch``), and the actor then runs its continuation on its
own thread, as it runs the answer to a call. The pipe is never closed: thespian keeps watching
until the process ends, and closing a watched descriptor breaks its shutdown.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Continuation = Callable[[Any, BaseException | None], None]


class Offload:
    """Runs blocking callables on ``workers`` threads; :meth:`finished` hands back their ends."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="actor-offload")
        self.fileno, self._wake = os.pipe()
        os.set_blocking(self.fileno, False)
        os.set_blocking(self._wake, False)
        self._done: deque[tuple[Continuation, Future]] = deque()

    def submit(self, work: Callable[[], Any], then: Continuation) -> None:
        self._pool.submit(work).add_done_callback(lambda future: self._ended(then, future))

    def _ended(self, then: Continuation, future: Future) -> None:
        """On a worker thread: queue the end (deque appends are atomic) and wake the actor."""
        self._done.append((then, future))
        try:
            os.write(self._wake, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups the actor has yet to read: awake anyway
            pass

    def finished(self) -> list[tuple[Continuation, Any, BaseException | None]]:
        """The continuations whose work has ended, with its value or exception (on the actor's thread)."""
        try:
            while os.read(self.fileno, 4096):
                pass
        except BlockingIOError:
            pass
        ended = []
        while self._done:
            then, future = self._done.popleft()
            error = future.exception()
            ended.append((then, None if error is not None else future.result(), error))
        return ended

    def stop(self) -> None:
        """Take no more work; what runs ends on its own (its continuation is never run)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
