"""Blocking work off an actor's thread: a few worker threads, and a pipe that wakes the actor.

thespian runs an actor's handlers on one thread, so a handler that waits on a slow outside
party (an HTTP call that takes seconds) stops the actor answering anyone else. Work given to
:class:`Offload` runs on its threads instead; each finished piece writes one byte to a pipe the
actor watches (thespian's ``ThespianWatch``), and the actor then runs its continuation on its
own thread, as it runs the answer to a call. The pipe is never closed: thespian keeps watching
until the process ends, and closing a watched descriptor breaks its shutdown.

The threads are daemon threads, not a ``ThreadPoolExecutor``'s: an interpreter joins an
executor's threads at exit, so an actor stopping while a call it offloaded hangs on a silent
party (a drain on SIGTERM) would outlive its stop by that call's timeout. A stopped actor's
work has no one to hand its end to anyway.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Continuation = Callable[[Any, BaseException | None], None]


class Offload:
    """Runs blocking callables on ``workers`` threads; :meth:`finished` hands back their ends."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._work: queue.SimpleQueue[tuple[Callable[[], Any], Future] | None] = queue.SimpleQueue()
        self._stopped = False
        self.fileno, self._wake = os.pipe()
        os.set_blocking(self.fileno, False)
        os.set_blocking(self._wake, False)
        self._done: deque[tuple[Continuation, Future]] = deque()

    def submit(self, work: Callable[[], Any], then: Continuation) -> None:
        if self._stopped:
            raise RuntimeError("this actor's offload is stopped")
        future: Future = Future()
        future.add_done_callback(lambda ended: self._ended(then, ended))
        self._work.put((work, future))
        if len(self._threads) < self._workers:  # a thread per piece of work, up to workers, as an executor would
            thread = threading.Thread(target=self._serve, name=f"actor-offload-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            work, future = item
            if self._stopped:
                continue  # queued before the stop: dropped, as an executor cancels pending work
            try:
                result = work()
            except BaseException as exc:  # handed to the continuation, as a future would
                future.set_exception(exc)
            else:
                future.set_result(result)

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
        """Take no more work; what runs ends on its own (its continuation is never run), or with
        the process: the threads never hold up its exit."""
        self._stopped = True
        for _ in self._threads:
            self._work.put(None)
