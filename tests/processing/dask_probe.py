"""Shared by the Dask tests (test_dask_run, test_sdsd_dask): a 2-process ``LocalCluster`` and a read probe that runs
on each worker and records how many frames it reads at a call and holds at once (a frame block is alive from its read
until numpy frees it, watched with ``weakref.finalize``). Workers import this module by name (multiprocessing's
spawn gives them the test process's ``sys.path``)."""
from __future__ import annotations

import contextlib
import importlib
import typing

_PROBES: dict[tuple[str, str], tuple[dict[str, int], typing.Any]] = {}


@contextlib.contextmanager
def local_cluster(**kwargs: typing.Any) -> typing.Iterator[typing.Any]:
    """A client of a fresh 2-worker, 1-thread, process-based LocalCluster (closed afterwards)."""
    import distributed

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       **kwargs)
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _owner(module: str, owner: str) -> typing.Any:
    target: typing.Any = importlib.import_module(module)
    for part in filter(None, owner.split(".")):
        target = getattr(target, part)
    return target


def install_read_probe(module: str, owner: str, name: str) -> None:
    """On a worker: wrap ``module.owner.name`` (``owner`` "" for a module function), a reader returning a block of
    frames along axis 0, to record the largest block read, the frames read and the most frames alive at once."""
    import gc
    import weakref

    target = _owner(module, owner)
    state = {"alive": 0, "max_alive": 0, "max_block": 0, "read": 0}
    original = getattr(target, name)

    def probe(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        gc.collect()  # count what is held, not garbage waiting for the collector
        data = original(*args, **kwargs)
        n = len(data)
        state["read"] += n
        state["max_block"] = max(state["max_block"], n)
        state["alive"] += n
        state["max_alive"] = max(state["max_alive"], state["alive"])
        weakref.finalize(data, lambda: state.__setitem__("alive", state["alive"] - n))
        return data

    setattr(target, name, probe)
    _PROBES[(module, owner + "." + name)] = (state, original)


def remove_read_probe(module: str, owner: str, name: str) -> dict[str, int]:
    """On a worker: restore the reader and return what the probe recorded ({} if none was installed)."""
    state, original = _PROBES.pop((module, owner + "." + name), ({}, None))
    if original is not None:
        setattr(_owner(module, owner), name, original)
    return dict(state)
