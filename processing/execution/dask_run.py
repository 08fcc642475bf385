"""The offline run on a ``dask.distributed`` cluster (called by :func:`processing.execution.offline.run_offline`
when it is given a ``client``: a ``Client`` or a scheduler address).

Each processor is split as its kind allows (:mod:`processing.execution.chunks`, whose passes run as tasks):

* ``"frame"``: one task per block of frames, for all such processors at once (the block is read once);
* ``"merge"``: pass 1 (each block's partial state, from the identity state) as parallel tasks; pass 2 (folding the
  partial states in order, cheap) here; pass 3 (each block from its true start state) as parallel tasks;
* ``"sequential"``: one task per block, chained: each waits for the previous block's state, so the processor runs
  in order, one block at a time (the run says so: the cluster cannot speed it up).

Input stays lazy: a task reads only its block (from the file, opened on the worker, when the stack comes from a
file; otherwise the block is read here and scattered to one worker), so no worker holds the whole stack. Tasks
return :class:`processing.execution.collect.FrameRecord` s (the kymograph's newest column, not its window).

Results are taken as soon as they are ready, in any order (``as_completed``), and put into the collectors in frame
order, so the workers release them at once (a worker holds its current blocks, not the run's outputs).

Failures keep what is done: a block whose task fails (a worker died, a processor error) is recorded as failed
frames with the cause (later blocks of a merge/sequential processor, which need its state, are not run); the run
is then marked incomplete. An unreachable scheduler raises :class:`DaskError` before anything is computed.
"""
from __future__ import annotations

import operator
import os
import threading
import typing

import numpy as np

from processing.base import Frame, ProcessingError
from processing.execution import chunks
from processing.execution.collect import Collector, FrameRecord, failed_record, reduce_outputs

if typing.TYPE_CHECKING:
    from processing.execution.offline import ProcessorSpec
    from processing.io.stacks import Stack

__all__ = ["DaskError", "connect", "run_on_dask"]

#: seconds to wait for a scheduler given by address before saying it is unreachable
CONNECT_TIMEOUT_S = 10.0

State = dict[str, typing.Any]


class DaskError(ProcessingError):
    """The cluster cannot be used (unreachable scheduler, no workers); problem, value, remedy."""


def connect(client_or_address: typing.Any) -> tuple[typing.Any, bool]:
    """(client, owned): the given ``Client``, or a new one connected to a scheduler address (owned: close it)."""
    from distributed import Client

    if isinstance(client_or_address, Client):
        return client_or_address, False
    if not isinstance(client_or_address, str):
        raise DaskError(f"client must be a dask.distributed Client or a scheduler address such as "
                        f"'tcp://127.0.0.1:8786'; got {client_or_address!r}.")
    try:
        return Client(client_or_address, timeout=CONNECT_TIMEOUT_S, set_as_default=False), True  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as error:
        raise DaskError(f"cannot reach the Dask scheduler at '{client_or_address}' ({type(error).__name__}: "
                        f"{error}); start one ('dask scheduler' and 'dask worker ADDRESS'), check the address, "
                        f"or run without --scheduler to use this computer only.") from None


# ------------------------------------------------------------------------------------------------ tasks
# Module-level functions: pickled by reference, run on the workers.

BlockSource = typing.Union[tuple[str, str, typing.Optional[str]], typing.Any]


def _frames(info: "Stack", source: BlockSource, block: range) -> list[Frame | FrameRecord]:
    from processing.execution.offline import make_frames, read_block
    from processing.io.stacks import open_stack

    if isinstance(source, tuple) and len(source) == 3 and source[0] == "file":
        stack = open_stack(source[1], dataset=source[2], lazy=True)
        try:
            return make_frames(info, block, read_block(stack, block))
        finally:
            stack.close()
    return make_frames(info, block, typing.cast("np.ndarray[typing.Any, typing.Any]", source))


def _hold(block: typing.Any) -> typing.Any:
    """A block of frames as a task result (recomputable, unlike scattered data)."""
    return block


def _records(processor: typing.Any, items: list[Frame | FrameRecord],
             peers: typing.Sequence[typing.Any] = ()) -> list[FrameRecord]:
    """Each frame through ``processor`` in order (a failing frame becomes a failed record, as in this process)."""
    from processing.execution.offline import process_one

    return [item if isinstance(item, FrameRecord) else process_one(processor, item, peers) for item in items]


def _task_frame_kind(specs: list["ProcessorSpec"], info: "Stack", source: BlockSource,
                     block: range) -> list[list[FrameRecord]]:
    """Every "frame" processor over one block (read once): records per processor."""
    items = _frames(info, source, block)
    processors = [s.cls(**s.parameters) for s in specs]
    return [_records(p, items, [q for q in processors if q is not p]) for p in processors]


def _task_partial(spec: "ProcessorSpec", info: "Stack", source: BlockSource, block: range) -> tuple[State, int]:
    valid = [f for f in _frames(info, source, block) if isinstance(f, Frame)]
    return chunks.partial_state(spec.cls, spec.parameters, valid)


def _task_from_state(spec: "ProcessorSpec", info: "Stack", source: BlockSource, block: range,
                     state: State | None) -> tuple[list[FrameRecord], State]:
    """Pass 3 / the sequential step (:func:`processing.execution.chunks.run_from_state`, frame-error tolerant)."""
    processor = spec.cls(**spec.parameters)
    if state is not None:
        processor.set_state(state)
    records = _records(processor, _frames(info, source, block))
    return records, processor.get_state()


# ------------------------------------------------------------------------------------------------ the run

def _failure(error: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        return (f"a Dask worker died while computing it ({error}); check the workers' memory limit and logs, "
                f"or use smaller blocks (block_frames)")
    return f"{type(error).__name__}: {error}"


def run_on_dask(specs: list["ProcessorSpec"], stack: "Stack", blocks: list[range], collectors: list[Collector], *,
                client: typing.Any, dataset: str | None, progress: typing.Callable[[int], None],
                cancel: threading.Event | None, messages: list[str]) -> list[bool]:
    """Run ``specs`` over ``blocks`` of ``stack`` on the cluster, adding the records to ``collectors`` in frame
    order. Returns, per processor, True when every block completed."""
    from processing.io.stacks import Stack

    from distributed import as_completed

    kinds = [chunks.split_kind(s.cls, s.parameters) for s in specs]
    c, owned = connect(client)
    n = len(specs)
    # client references to what is in flight: dropped as soon as a result is taken, so workers release it
    records: dict[typing.Any, tuple[int, int]] = {}   # record future -> (processor index, block index)
    partials: dict[typing.Any, tuple[int, int]] = {}  # partial-state future -> (processor index, block index)
    try:
        if not c.scheduler_info().get("workers"):
            raise DaskError(f"the Dask cluster at {c.scheduler.address} has no worker; start one "
                            f"('dask worker {c.scheduler.address}') or run without a cluster.")
        info = Stack(data=None, calibrations=stack.calibrations, timestamps_s=stack.timestamps_s,
                     intensity_units=stack.intensity_units, source=stack.source)
        if isinstance(stack.source, str) and os.path.isfile(stack.source):
            sources: list[typing.Any] = [("file", os.path.abspath(stack.source), dataset)] * len(blocks)
        else:
            from processing.execution.offline import read_block
            # each block is a task of its own (not scattered): if the worker holding it dies, the scheduler
            # recomputes it elsewhere from the task, instead of losing it
            sources = [c.submit(_hold, read_block(stack, b), pure=False) for b in blocks]

        frame_specs = [i for i, k in enumerate(kinds) if k == "frame"]
        if frame_specs:
            group = [specs[i] for i in frame_specs]
            for b, (block, src) in enumerate(zip(blocks, sources)):
                fut = c.submit(_task_frame_kind, group, info, src, block, pure=False)
                for j, i in enumerate(frame_specs):
                    records[c.submit(operator.getitem, fut, j, pure=False)] = (i, b)
        for i, (spec, kind) in enumerate(zip(specs, kinds)):
            if kind == "sequential":
                messages.append(f"{spec.processor_id} is sequential (each frame depends on the one before): it runs "
                                f"in order, one block after the other, one task at a time; the cluster does not "
                                f"speed it up.")
                state: typing.Any = None
                for b, (block, src) in enumerate(zip(blocks, sources)):
                    fut = c.submit(_task_from_state, spec, info, src, block, state, pure=False)
                    state = c.submit(operator.getitem, fut, 1, pure=False)
                    records[c.submit(operator.getitem, fut, 0, pure=False)] = (i, b)
                del state
        merge_specs = [i for i, k in enumerate(kinds) if k == "merge"]
        for i in merge_specs:
            if len(blocks) == 1:  # nothing to merge
                fut = c.submit(_task_from_state, specs[i], info, sources[0], blocks[0], None, pure=False)
                records[c.submit(operator.getitem, fut, 0, pure=False)] = (i, 0)
            for b, (block, src) in enumerate(zip(blocks[:-1], sources[:-1])):
                partials[c.submit(_task_partial, specs[i], info, src, block, pure=False)] = (i, b)

        complete = [True] * n
        halted: set[int] = set()
        done_partials: dict[int, dict[int, tuple[State, int] | None]] = {
            i: {} for i in merge_specs if len(blocks) > 1}
        pending: list[dict[int, list[FrameRecord]]] = [dict() for _ in range(n)]
        next_block = [0] * n
        reported = 0
        queue = as_completed(list(records) + list(partials), loop=c.loop)  # type: ignore[no-untyped-call]
        for fut in queue:
            if cancel is not None and cancel.is_set():  # what is complete stays complete
                return [ok_ and i not in halted and next_block[i] == len(blocks) for i, ok_ in enumerate(complete)]
            if fut in partials:  # pass 1 done for one block: when all are, pass 2 here and pass 3 as tasks
                i, b = partials.pop(fut)
                try:
                    done_partials[i][b] = fut.result()
                except Exception as error:
                    done_partials[i][b] = None
                    messages.append(f"{specs[i].processor_id}: the partial state of frames {blocks[b].start}-"
                                    f"{blocks[b][-1]} failed ({_failure(error)}); frames from {blocks[b].start} "
                                    f"on were not computed for it.")
                if len(done_partials[i]) == len(blocks) - 1:
                    ok: list[tuple[State, int]] = []
                    for b2 in range(len(blocks) - 1):
                        part = done_partials[i][b2]
                        if part is None:
                            break
                        ok.append(part)
                    if len(ok) < len(blocks) - 1:
                        complete[i] = False
                    starts = chunks.fold_states(specs[i].cls, specs[i].parameters, ok + [({}, 0)])
                    for b2, start in enumerate(starts):
                        task = c.submit(_task_from_state, specs[i], info, sources[b2], blocks[b2], start, pure=False)
                        out = c.submit(operator.getitem, task, 0, pure=False)
                        records[out] = (i, b2)
                        queue.add(out)  # type: ignore[no-untyped-call]
                    del done_partials[i]
                continue
            if fut not in records:  # a later block of a processor halted by a failure
                continue
            i, b = records.pop(fut)
            try:
                pending[i][b] = fut.result()
            except Exception as error:
                complete[i] = False
                reason = _failure(error)
                messages.append(f"{specs[i].processor_id}: frames {blocks[b].start}-{blocks[b][-1]} failed ({reason}).")
                pending[i][b] = [failed_record(f, float(stack.timestamps_s[f]) if stack.timestamps_s is not None
                                               else float(f), f"frame {f} not computed: {reason}") for f in blocks[b]]
                if kinds[i] != "frame":
                    later = [f for f, (k, _) in records.items() if k == i]
                    for other in later:
                        records.pop(other)  # later blocks need this one's state: not computed
                    c.cancel(later)
                    halted.add(i)
            del fut
            while next_block[i] in pending[i]:  # in frame order into the collector
                for record in pending[i].pop(next_block[i]):
                    collectors[i].add(record)
                next_block[i] += 1
            if i in halted:
                pending[i].clear()
            active = [collectors[k].frames_added for k in range(n) if k not in halted]
            now = min(active) if active else reported
            if now > reported:
                progress(now - reported)
                reported = now
        for i in merge_specs:
            if i in done_partials or next_block[i] < len(blocks):
                complete[i] = False
        return [ok_ and i not in halted and next_block[i] == len(blocks) for i, ok_ in enumerate(complete)]
    finally:
        try:
            c.cancel(list(records) + list(partials))
        except Exception:  # the connection is already gone: nothing left to cancel
            pass
        if owned:
            c.close()
