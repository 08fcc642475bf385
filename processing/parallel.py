"""One process-wide worker pool shared by every processor, with a work-sharing :func:`map_chunks`.

The kernels called in the tasks are single-threaded and release the GIL (numba ``nogil``, scipy.fft with
``workers=1``, OpenCV with one thread), so the calling thread plus the pool's threads use the cores without any
OpenMP pool spinning against another one.

The caller always takes part in its own ``map_chunks`` call and only waits for tasks a helper has *started*: a
nested call (a task that itself calls ``map_chunks``) or a call made while the helpers are busy never deadlocks; it
simply runs more of its tasks itself.

Example
-------
>>> map_chunks(lambda x: x * x, [1, 2, 3])
[1, 4, 9]
"""
from __future__ import annotations

import concurrent.futures
import os
import threading
import typing

__all__ = ["map_chunks", "workers", "set_workers"]

_T = typing.TypeVar("_T")
_R = typing.TypeVar("_R")

_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_workers = max(1, os.cpu_count() or 1)


def workers() -> int:
    """Total number of threads a :func:`map_chunks` call may use (the caller included); default: the core count."""
    return _workers


def set_workers(n: int) -> None:
    """Set the total concurrency (caller included); ``1`` makes :func:`map_chunks` run serially in the caller."""
    global _executor, _workers
    if int(n) < 1:
        from processing.base import ParameterError
        raise ParameterError(f"set_workers needs at least 1 worker; got {n!r}.")
    with _lock:
        _workers = int(n)
        old, _executor = _executor, None
    if old is not None:
        old.shutdown(wait=False)


def _pool() -> concurrent.futures.ThreadPoolExecutor | None:
    global _executor
    with _lock:
        if _workers <= 1:
            return None
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=_workers - 1,
                                                              thread_name_prefix="insitu-worker")
        return _executor


def map_chunks(fn: typing.Callable[[_T], _R], items: typing.Iterable[_T]) -> list[_R]:
    """``[fn(item) for item in items]``, shared between the calling thread and the pool; results in input order.

    Items are handed out one at a time in order (put the largest first for the best balance). The first exception
    raised by ``fn`` is re-raised in the caller after every started task has finished.
    """
    todo = list(items)
    n = len(todo)
    pool = _pool() if n > 1 else None
    if pool is None:
        return [fn(item) for item in todo]
    results: list[typing.Any] = [None] * n
    failures: list[tuple[int, BaseException]] = []
    state = {"next": 0, "left": n}
    state_lock = threading.Lock()
    finished = threading.Event()

    def run() -> None:
        while True:
            with state_lock:
                i = state["next"]
                if i >= n:
                    return
                state["next"] = i + 1
            try:
                results[i] = fn(todo[i])
            except BaseException as e:  # re-raised in the caller
                with state_lock:
                    failures.append((i, e))
            with state_lock:
                state["left"] -= 1
                if state["left"] == 0:
                    finished.set()

    for _ in range(min(n - 1, _workers - 1)):
        pool.submit(run)
    run()
    finished.wait()
    if failures:
        raise min(failures, key=lambda f: f[0])[1]
    return typing.cast(list[_R], results)
