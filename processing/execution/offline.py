"""Offline runs: one or several processors over a recorded image stack, the full result of each.

>>> import numpy as np
>>> from processing.execution.offline import run_offline
>>> movie = np.random.default_rng(0).random((20, 32, 32), dtype=np.float32)
>>> run = run_offline(["insitu.live_difference", "insitu.radial_kymograph"], movie,
...                   parameters={"insitu.live_difference": {"fast": 2, "slow": 10}}, progress=False)
>>> run.complete, run["insitu.live_difference"].images["image"].data.shape
(True, (20, 32, 32))
>>> run["insitu.radial_kymograph"].kymographs["kymograph"].data.shape[1]   # one column per frame
20

The input is a :class:`processing.io.stacks.Stack`, a path (read lazily by :func:`processing.io.stacks.open_stack`:
HDF5/EMD, DM3/DM4, TIFF, MRC, .npy memory-mapped...) or an array (N, H, W) (numpy, memory-mapped or Dask). Frames
are read in blocks of ``block_frames`` so a stack larger than memory streams through. Given ``client`` (a
``dask.distributed.Client`` or a scheduler address) the same run happens on the cluster
(:mod:`processing.execution.dask_run`). ``output``: a ``.hspy``/``.h5``/``.zspy`` file (:mod:`processing.io.results`).

Nothing computed is lost: a frame that cannot be processed (NaN pixels...) is skipped and listed in the result's
``failed_frames``; Ctrl-C, ``cancel`` or a failing cluster stop the run, and the frames done so far are returned
(and written) with ``provenance["complete"] = False``.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import typing

import numpy as np

from processing import registry
from processing.base import Frame, InputError, ParameterError, Processor, ProcessingError, make_frame
from processing.execution import parallel
from processing.execution.chunks import run_frames
from processing.execution.collect import Collector, FrameRecord, ProcessorResult, failed_record, reduce_outputs

if typing.TYPE_CHECKING:
    from processing.io.stacks import Stack

__all__ = ["run_offline", "OfflineRun", "ProcessorSpec", "resolve_processors", "open_input", "frame_indices",
           "make_frames", "block_ranges", "read_block", "ProgressLike"]

ProgressLike = typing.Union[bool, typing.Callable[[int, int], None]]


@dataclasses.dataclass(frozen=True)
class ProcessorSpec:
    """One processor of a run: its class and its validated parameter values."""

    cls: type[Processor]
    parameters: dict[str, typing.Any]

    @property
    def processor_id(self) -> str:
        return self.cls.processor_id


@dataclasses.dataclass
class OfflineRun:
    """The results of a run: ``run[processor_id]`` -> :class:`processing.execution.collect.ProcessorResult`.

    complete: every frame of the range went through every processor (skipped bad frames do not count against
    it; they are in each result's ``failed_frames``). interrupted: stopped by Ctrl-C or cancel. messages: what the
    user should know (sequential processors, cluster failures, where partial results were written).
    """

    results: dict[str, ProcessorResult]
    complete: bool
    interrupted: bool = False
    messages: list[str] = dataclasses.field(default_factory=list)
    output_path: str | None = None

    def __getitem__(self, processor_id: str) -> ProcessorResult:
        return self.results[processor_id]

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self.results)


# ------------------------------------------------------------------------------------------------ inputs

def resolve_processors(processor_ids: typing.Sequence[str | type[Processor]] | str | type[Processor],
                       parameters: typing.Mapping[str, typing.Any] | None = None) -> list[ProcessorSpec]:
    """Processor classes and validated parameters.

    parameters: ``{processor_id: {name: value}}``, or flat ``{name: value}`` (each name goes to every processor
    of the run that declares it; ``"processor_id:name"`` targets one). A name no processor declares is an error.
    """
    ids = [processor_ids] if isinstance(processor_ids, (str, type)) else list(processor_ids)
    if not ids:
        raise ParameterError("no processor given; name at least one, e.g. 'insitu.live_difference' "
                             f"(known: {[c.processor_id for c in registry.all_processors()]}).")
    classes = []
    for pid in ids:
        if isinstance(pid, type) and issubclass(pid, Processor):  # a class, registered or not
            classes.append(pid)
            continue
        try:
            classes.append(registry.get(pid))
        except KeyError as error:
            raise ParameterError(str(error.args[0]) + "; check the spelling of the processor id.") from None
    per: dict[str, dict[str, typing.Any]] = {cls.processor_id: {} for cls in classes}
    for key, value in dict(parameters or {}).items():
        if key in per and isinstance(value, typing.Mapping):
            per[key].update(value)
            continue
        target, _, name = key.rpartition(":")
        if target:
            if target not in per:
                raise ParameterError(f"parameter '{key}' names processor '{target}', which is not in this run "
                                     f"({list(per)}); use one of them.")
            per[target][name] = value
            continue
        takers = [c.processor_id for c in classes if name in {p.name for p in c.PARAMETERS}]
        if not takers:
            known = {c.processor_id: [p.name for p in c.PARAMETERS] for c in classes}
            raise ParameterError(f"no processor of this run has a parameter '{name}'; their parameters are {known}.")
        for pid in takers:
            per[pid][name] = value
    specs = []
    for cls in classes:
        processor = cls(**per[cls.processor_id])  # validates (ParameterError with range and remedy)
        specs.append(ProcessorSpec(cls, processor.parameters))
    return specs


def open_input(stack_or_path: typing.Any, *, dataset: str | None = None) -> "Stack":
    """A :class:`processing.io.stacks.Stack` from a Stack, a path or an array (N, H, W) / list of frames."""
    from processing.io import stacks

    if isinstance(stack_or_path, stacks.Stack):
        return stack_or_path
    if isinstance(stack_or_path, (str, os.PathLike)):
        return stacks.open_stack(stack_or_path, dataset=dataset, lazy=True)
    if isinstance(stack_or_path, (list, tuple)):
        shapes = [np.shape(f) for f in stack_or_path]
        changed = [i for i, s in enumerate(shapes) if s != shapes[0]]
        if changed:
            raise InputError(f"the frames change shape: frame 0 is {shapes[0]} but frame {changed[0]} is "
                             f"{shapes[changed[0]]}; an offline run needs frames of one shape: crop or resample "
                             f"them to a common size, or run each part separately.")
        stack_or_path = np.stack([np.asarray(f) for f in stack_or_path]) if stack_or_path else np.zeros((0, 0, 0))
    return stacks.stack_from_array(stack_or_path)


def frame_indices(frames: slice | tuple[int | None, int | None] | range | None, n_frames: int) -> range:
    """The frame numbers of a run: a slice/range/(start, stop) of the stack's ``n_frames`` (None: all)."""
    if frames is None:
        return range(n_frames)
    if isinstance(frames, range):
        frames = slice(frames.start, frames.stop, frames.step)
    if isinstance(frames, tuple):
        frames = slice(frames[0], frames[1])
    indices = range(n_frames)[frames]
    if len(indices) == 0:
        raise InputError(f"the frame range {frames.start}:{frames.stop} selects no frame of the stack's "
                         f"{n_frames}; choose START:STOP with 0 <= START < STOP <= {n_frames}.")
    return indices


def block_ranges(indices: range, block_frames: int) -> list[range]:
    """``indices`` cut into consecutive blocks of at most ``block_frames`` frames."""
    step = max(1, int(block_frames))
    return [indices[i:i + step] for i in range(0, len(indices), step)]


def read_block(stack: "Stack", block: range) -> np.ndarray[typing.Any, typing.Any]:
    """Frames ``block`` of ``stack`` read now (only these), (n, H, W) numpy."""
    if block.step == 1:
        part = stack.data[block.start:block.stop]
    else:
        part = stack.data[block.start:block.stop:block.step]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="synchronous")
    return np.asarray(part)


def make_frames(stack: "Stack", block: range, data: np.ndarray[typing.Any, typing.Any]) -> list[Frame | FrameRecord]:
    """:class:`Frame` s of one block; a frame that cannot be processed (NaN...) becomes a failed record."""
    out: list[Frame | FrameRecord] = []
    for i, image in zip(block, data):
        t = float(stack.timestamps_s[i]) if stack.timestamps_s is not None else float(i)
        try:
            out.append(make_frame(image, calibrations=stack.calibrations, frame_number=i, timestamp_s=t,
                                  intensity_units=stack.intensity_units))
        except InputError as error:
            out.append(failed_record(i, t, f"frame {i} of '{stack.source}' skipped: {error}"))
    return out


def _default_block_frames(stack: "Stack") -> int:
    chunks = getattr(stack.data, "chunks", None)
    if chunks and isinstance(chunks[0], tuple) and chunks[0]:
        first = int(chunks[0][0])
        if 4 <= first <= 256:
            return first
    h, w = stack.frame_shape
    return int(max(1, min(64, (64 << 20) // max(1, 4 * h * w))))  # ~64 MB of float32 per block


# ------------------------------------------------------------------------------------------------ the run

def run_offline(processor_ids: typing.Sequence[str | type[Processor]] | str | type[Processor],
                stack_or_path: typing.Any, *,
                parameters: typing.Mapping[str, typing.Any] | None = None,
                frames: slice | tuple[int | None, int | None] | range | None = None,
                client: typing.Any = None, progress: ProgressLike = True,
                output: str | os.PathLike[str] | None = None, dataset: str | None = None,
                block_frames: int | None = None, cancel: threading.Event | None = None) -> OfflineRun:
    """Run processors over a recorded stack; the full result of each (see the module docstring).

    processor_ids: one id or several (``processing.registry``); a Processor class may stand for its id. parameters: see :func:`resolve_processors`.
    frames: the frame range (slice or (start, stop); default all). client: None (this process), a
    ``dask.distributed.Client`` or a scheduler address ``"tcp://host:8786"``. progress: True (a tqdm bar on the
    terminal), False, or ``fn(done, total)``. output: a results file (.hspy/.h5/.zspy), written at the end, also when
    the run stops early (then marked incomplete). dataset: which dataset of a multi-dataset file. block_frames:
    frames read (and, on Dask, sent to a task) at a time. cancel: set it to stop the run (keeps what is done).
    Raises :class:`processing.base.ProcessingError` (problem, value, remedy) for bad ids, parameters, input or
    output path, before anything is computed.
    """
    from processing.io import results as results_io

    specs = resolve_processors(processor_ids, parameters)
    out_path = results_io.check_output_path(output) if output is not None else None
    stack = open_input(stack_or_path, dataset=dataset)
    indices = frame_indices(frames, stack.n_frames)
    blocks = block_ranges(indices, block_frames or _default_block_frames(stack))
    times_are_frames = stack.timestamps_s is None
    collectors = [Collector(s.processor_id, s.parameters, stack.source, n_frames=len(indices),
                            times_are_frames=times_are_frames) for s in specs]
    messages: list[str] = []
    if times_are_frames:
        messages.append(f"'{stack.source}' has no timestamps: time axes are frame numbers (units 'frame').")
    reporter = _Progress(progress, len(indices))
    interrupted = False
    per_processor = [False] * len(specs)
    try:
        if client is not None:
            from processing.execution import dask_run
            per_processor = dask_run.run_on_dask(specs, stack, blocks, collectors, client=client, dataset=dataset,
                                                 progress=reporter.update, cancel=cancel, messages=messages)
            interrupted = cancel is not None and cancel.is_set()
        else:
            interrupted = not _run_here(specs, stack, blocks, collectors, reporter.update, cancel)
            per_processor = [not interrupted] * len(specs)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        reporter.close()
    if interrupted:
        if client is None:
            per_processor = [False] * len(specs)
        done = min(c.frames_added for c in collectors)
        messages.append(f"interrupted after {done} of {len(indices)} frames; the results hold those frames and "
                        f"are marked incomplete.")
    run = OfflineRun({c.processor_id: c.result(complete=ok) for c, ok in zip(collectors, per_processor)},
                     all(per_processor), interrupted, messages)
    if out_path is not None:
        _write(run, out_path)
    return run


def _run_here(specs: list[ProcessorSpec], stack: "Stack", blocks: list[range], collectors: list[Collector],
              progress: typing.Callable[[int], None], cancel: threading.Event | None) -> bool:
    """Every processor over every frame in this process, frame by frame (one read per block); the processors of a
    frame run in parallel on :mod:`processing.execution.parallel`'s pool (one thread per core)."""
    processors = [s.cls(**s.parameters) for s in specs]
    for block in blocks:
        if cancel is not None and cancel.is_set():
            return False
        for item in make_frames(stack, block, read_block(stack, block)):
            if isinstance(item, FrameRecord):
                for collector in collectors:
                    collector.add(item)
            else:  # the processors of one frame in parallel on the shared pool (each keeps its own order)
                frame = item

                def one(p: Processor) -> FrameRecord:
                    return process_one(p, frame, [q for q in processors if q is not p])

                records = parallel.map_chunks(one, processors)
                for record, collector in zip(records, collectors):
                    collector.add(record)
            progress(1)
    return True


def process_one(processor: Processor, frame: Frame, peers: typing.Sequence[Processor] = ()) -> FrameRecord:
    """One frame through one processor, reduced to its :class:`FrameRecord` (an error becomes a failed record)."""
    try:
        outputs = run_frames(processor, [frame], peers=peers)[0]
    except ProcessingError as error:
        return failed_record(frame.frame_number, frame.timestamp_s,
                             f"{processor.processor_id} failed on frame {frame.frame_number}: {error}")
    except Exception as error:  # a processor bug must not lose the frames already done
        return failed_record(frame.frame_number, frame.timestamp_s,
                             f"{processor.processor_id} failed on frame {frame.frame_number} "
                             f"({type(error).__name__}: {error}); please report this.")
    return reduce_outputs(outputs, frame.frame_number, frame.timestamp_s)


def _write(run: OfflineRun, out_path: typing.Any) -> None:
    """Write the results; when the target fails (disk full...), write them to the temporary folder instead."""
    import tempfile

    from processing.io import results as results_io

    try:
        run.output_path = str(results_io.write_results(list(run.results.values()), out_path))
    except results_io.ResultsError as error:
        fallback = os.path.join(tempfile.gettempdir(), f"insitu-results-{os.getpid()}{out_path.suffix}")
        try:
            run.output_path = str(results_io.write_results(list(run.results.values()), fallback))
            run.messages.append(f"{error} The results were written to '{fallback}' instead.")
        except results_io.ResultsError as second:
            run.messages.append(f"{error} Writing them to '{fallback}' failed too ({second}); the results are "
                                f"only in memory (the returned run).")
    if run.output_path and not run.complete:
        run.messages.append(f"partial results written to '{run.output_path}' (marked incomplete).")


class _Progress:
    """tqdm on the terminal, a callback, or nothing."""

    def __init__(self, progress: ProgressLike, total: int) -> None:
        self.total = total
        self.done = 0
        self._bar: typing.Any = None
        self._fn = progress if callable(progress) else None
        if progress is True:
            from tqdm import tqdm
            self._bar = tqdm(total=total, unit="frame", desc="nionswift-insitu", leave=True)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self._fn is not None:
            self._fn(self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
