"""Run processors over recorded frames, in one piece or split into chunks, honouring each one's split kind.

The contract (:class:`processing.base.Processor`): ``split`` (or ``split_kind()`` when it depends on the parameters)
is one of

* ``"frame"``: stateless, every frame independent: chunks run independently (in any order, anywhere);
* ``"merge"``: the state carried between frames is a linear recursion or an append-only history (the EWMAs of live
  difference, the kymograph's window): a chunk run from the identity state (``start_partial``) summarises itself in
  a *partial* state, and ``merge_states(earlier, partial, n)`` gives exactly the state after ``earlier`` followed by
  that chunk. :func:`run_chunked` then makes three passes (LiberTEM's UDF ``merge`` is the anchor, plus a replay):
  pass 1 one partial state per chunk (parallelisable), pass 2 fold them in order (cheap), pass 3 each chunk from its
  true start state (parallelisable), so every output equals the single-piece run;
* ``"sequential"``: in order only (tracking "nearest to previous"): the state is carried from chunk to chunk with
  ``get_state``/``set_state``.

The passes are separate functions (:func:`partial_state`, :func:`fold_states`, :func:`run_from_state`) so a
scheduler (Dask) can run them as tasks; :func:`run_chunked` runs them in this process.

>>> import numpy as np
>>> from processing.base import Frame
>>> from processing.live.filters import LiveDifferenceProcessor
>>> frames = [Frame(np.full((4, 4), float(i), np.float32), frame_number=i) for i in range(10)]
>>> whole = run_frames(LiveDifferenceProcessor(), frames)
>>> split = run_chunked(LiveDifferenceProcessor, {}, [frames[:3], frames[3:4], frames[4:]])
>>> bool(np.allclose(whole[-1][0].data, split[-1][0].data))
True
"""
from __future__ import annotations

import typing

import numpy as np

from processing.base import Context, Frame, FrameMemo, Outputs, Processor, SplitKind

__all__ = ["run_frames", "split_kind", "partial_state", "fold_states", "run_from_state", "run_chunked",
           "outputs_difference"]

State = dict[str, typing.Any]


def run_frames(processor: Processor, frames: typing.Iterable[Frame], *,
               peers: typing.Sequence[Processor] = ()) -> list[Outputs]:
    """``processor.process`` over ``frames`` in order (each with its own frame memo); the outputs, one per frame.

    ``peers``: other processors fed the same frames (see :attr:`processing.base.Context.peers`). A
    :class:`processing.base.ProcessingError` on a frame propagates (the caller decides to stop or skip).
    """
    return [processor.process(frame, Context(memo=FrameMemo(), peers=peers)) for frame in frames]


def split_kind(processor_class: type[Processor], parameters: typing.Mapping[str, typing.Any]) -> SplitKind:
    """The split kind of ``processor_class`` with ``parameters`` (it may depend on them)."""
    return processor_class(**parameters).split_kind()


def partial_state(processor_class: type[Processor], parameters: typing.Mapping[str, typing.Any],
                  chunk: typing.Iterable[Frame]) -> tuple[State, int]:
    """Pass 1 of a "merge" run: (partial state, number of frames) of ``chunk`` run from the identity state."""
    processor = processor_class(**parameters)
    processor.start_partial()
    count = 0
    for frame in chunk:
        processor.process(frame, Context(memo=FrameMemo()))
        count += 1
    return processor.get_state(), count


def fold_states(processor_class: type[Processor], parameters: typing.Mapping[str, typing.Any],
                partials: typing.Sequence[tuple[State, int]], initial: State | None = None) -> list[State]:
    """Pass 2 of a "merge" run: the true start state of each chunk (``initial`` or a fresh processor's state for
    the first), folding the chunks' partial states in order with ``merge_states``."""
    processor = processor_class(**parameters)
    state = processor.get_state() if initial is None else initial
    starts: list[State] = []
    for partial, count in partials:
        starts.append(state)
        state = processor.merge_states(state, partial, count) if count else state
    return starts


def run_from_state(processor_class: type[Processor], parameters: typing.Mapping[str, typing.Any],
                   state: State | None, chunk: typing.Iterable[Frame]) -> tuple[list[Outputs], State]:
    """Pass 3 (and the sequential step): run ``chunk`` from ``state`` (None: a fresh processor); return its
    outputs and the state after its last frame."""
    processor = processor_class(**parameters)
    if state is not None:
        processor.set_state(state)
    outputs = run_frames(processor, chunk)
    return outputs, processor.get_state()


def run_chunked(processor_class: type[Processor], parameters: typing.Mapping[str, typing.Any],
                chunks: typing.Sequence[typing.Sequence[Frame]]) -> list[Outputs]:
    """One processor over consecutive ``chunks`` of frames, split as its kind allows; the outputs of every frame,
    in order, equal to ``run_frames`` over the concatenated chunks."""
    kind = split_kind(processor_class, parameters)
    if kind == "frame":
        return [out for chunk in chunks for out in run_from_state(processor_class, parameters, None, chunk)[0]]
    if kind == "merge":
        partials = [partial_state(processor_class, parameters, chunk) for chunk in chunks[:-1]]
        starts = fold_states(processor_class, parameters, partials + [({}, 0)])
        return [out for start, chunk in zip(starts, chunks)
                for out in run_from_state(processor_class, parameters, start, chunk)[0]]
    if kind != "sequential":
        raise ValueError(f"{processor_class.__name__} declares split kind {kind!r}; expected 'frame', 'merge' or "
                         f"'sequential'. Fix the processor's `split` attribute.")
    results: list[Outputs] = []
    state: State | None = None
    for chunk in chunks:
        outputs, state = run_from_state(processor_class, parameters, state, chunk)
        results.extend(outputs)
    return results


def _arrays(output: typing.Any) -> list[np.ndarray[typing.Any, typing.Any]]:
    out = []
    for name in ("data", "times_s", "values"):
        value = getattr(output, name, None)
        if value is not None:
            out.append(np.asarray(value, np.float64))
    for name in ("center_px", "radius_px"):
        value = getattr(output, name, None)
        if value is not None:
            out.append(np.atleast_1d(np.asarray(value, np.float64)))
    return out


def outputs_difference(a: Outputs, b: Outputs) -> float:
    """The largest relative difference between two processors' outputs of one frame: per array,
    max|a - b| / max|b| (0 when equal); ``inf`` when names, kinds, shapes or texts differ."""
    if len(a) != len(b):
        return float("inf")
    worst = 0.0
    for x, y in zip(a, b):
        if type(x) is not type(y) or x.name != y.name or getattr(x, "text", None) != getattr(y, "text", None):
            return float("inf")
        if getattr(x, "visible", None) != getattr(y, "visible", None):
            return float("inf")
        for u, v in zip(_arrays(x), _arrays(y)):
            if u.shape != v.shape:
                return float("inf")
            if u.size == 0:
                continue
            scale = float(np.max(np.abs(v)))
            diff = float(np.max(np.abs(u - v)))
            if diff > 0:
                worst = max(worst, diff / scale if scale > 0 else float("inf"))
    return worst
