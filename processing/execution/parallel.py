"""One process-wide worker pool shared by every processor: :class:`TaskGroup` and :func:`map_chunks`.

The kernels run in the tasks are single-threaded and release the GIL (numba ``nogil``, scipy.fft with
``workers=1``, OpenCV with one thread), so the calling threads plus the pool's threads use the cores without any
OpenMP pool spinning against another one. The pool has ``workers() - 1`` threads: the caller is the other worker.

Work sharing, no deadlock:

* a :class:`TaskGroup` is a list of tasks; any number of threads may :meth:`TaskGroup.join` it: each joiner takes
  tasks until none is left, then waits only for the tasks other threads have *started*;
* while it waits, a joiner runs queued helper jobs of other groups instead of idling, so nested groups (a task that
  itself maps chunks) and several processors sharing one computation (e.g. one tile pass for Max-FFT and the
  orientation map, shared through ``Context.memo``) keep every core busy.

Example
-------
>>> map_chunks(lambda x: x * x, [1, 2, 3])
[1, 4, 9]
"""
from __future__ import annotations

import collections
import os
import threading
import typing

__all__ = ["TaskGroup", "map_chunks", "workers", "set_workers"]

_T = typing.TypeVar("_T")
_R = typing.TypeVar("_R")

_cv = threading.Condition()
_jobs: collections.deque[typing.Callable[[], None]] = collections.deque()
_threads: list[threading.Thread] = []
_workers = max(1, os.cpu_count() or 1)
_generation = 0


def workers() -> int:
    """Total number of threads working on a group (the caller included); default: the number of cores."""
    return _workers


def set_workers(n: int) -> None:
    """Set the total concurrency (caller included); ``1`` makes every group run serially in its caller."""
    global _workers, _generation
    if int(n) < 1:
        from processing.base import ParameterError
        raise ParameterError(f"set_workers needs at least 1 worker; got {n!r}.")
    with _cv:
        _workers = int(n)
        _generation += 1  # running pool threads of the old generation exit when idle
        _threads.clear()
        _cv.notify_all()


def _worker_loop(generation: int) -> None:
    while True:
        with _cv:
            while not _jobs and generation == _generation:
                _cv.wait()
            if generation != _generation:
                return
            job = _jobs.popleft()
        job()


def _submit(job: typing.Callable[[], None], count: int) -> None:
    with _cv:
        while len(_threads) < _workers - 1:
            t = threading.Thread(target=_worker_loop, args=(_generation,), name="insitu-worker", daemon=True)
            _threads.append(t)
            t.start()
        for _ in range(count):
            _jobs.append(job)
        _cv.notify_all()


def _nothing(item: typing.Any) -> typing.Any:
    return None


class TaskGroup(typing.Generic[_T, _R]):
    """``fn`` applied to each item, shared by every thread that joins; results in input order.

    Items are handed out one at a time in order: put the largest first for the best balance.
    """

    def __init__(self, fn: typing.Callable[[_T], _R], items: typing.Iterable[_T]) -> None:
        self._fn: typing.Callable[[typing.Any], typing.Any] = fn
        self._items: list[typing.Any] = list(items)
        self._results: list[typing.Any] = [None] * len(self._items)
        self._failures: list[tuple[int, BaseException]] = []
        self._next = 0
        self._left = len(self._items)
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        return self._left == 0

    def _run(self) -> None:
        n = len(self._items)
        while True:
            with self._lock:
                i = self._next
                if i >= n:
                    return
                self._next = i + 1
            try:
                self._results[i] = self._fn(self._items[i])
            except BaseException as e:  # re-raised in every joiner
                with self._lock:
                    self._failures.append((i, e))
            with self._lock:
                self._left -= 1
                finished = self._left == 0
            if finished:
                with _cv:
                    _cv.notify_all()

    def join(self) -> list[_R]:
        """Work on the group until every task has finished; return the results (re-raise the first failure)."""
        remaining = len(self._items) - self._next
        if remaining > 1 and _workers > 1:
            _submit(self._run, min(remaining - 1, _workers - 1))
        self._run()
        while not self.done:
            with _cv:
                while not self.done and not _jobs:
                    _cv.wait()
                if self.done:
                    break
                job = _jobs.popleft()
            job()  # help another group (or this one) while waiting
        results, failures = self._results, self._failures
        with self._lock:  # stale helper jobs still queued must not keep the items (frames) alive
            self._items = []
            self._results = []
            self._fn = _nothing
        if failures:
            raise min(failures, key=lambda f: f[0])[1]
        return typing.cast(list[_R], results)


def map_chunks(fn: typing.Callable[[_T], _R], items: typing.Iterable[_T]) -> list[_R]:
    """``[fn(item) for item in items]`` on the shared pool, the caller included; results in input order."""
    return TaskGroup(fn, items).join()
