"""Full-track inference in overlapping chunks, so any length fits in bounded memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from mir.models.model import MultiTaskModel


@torch.no_grad()
def infer_track(
    model: MultiTaskModel,
    audio: np.ndarray,
    output_kinds: dict[str, str],
    chunk_seconds: float = 30.0,
    margin_seconds: float = 3.0,
    fast: bool = True,
    dtype: torch.dtype = torch.float32,
) -> dict[str, np.ndarray]:
    """Run `model` over a whole track.

    The track is cut into chunks of `chunk_seconds` that start on frame boundaries, each
    extended by `margin_seconds` of context on both sides (longer than the longest CQT
    kernel's half length at the default grid, 2.6 s); the margins' frames are dropped and
    the rest concatenated, so frame t of the result is frame t of the whole track.
    Track-level outputs are averaged over chunks, weighted by their length.

    Args:
        model: the shared model (in eval mode).
        audio: (N,) mono audio at the front end's rate.
        output_kinds: task -> ``frames`` or ``track``.
        chunk_seconds: core length of a chunk, in s.
        margin_seconds: context on each side, in s.
        fast: run `mir.models.fused.inference_model(model)` (batch norms folded, salience heads
            fused, channels-last; same outputs to float rounding) instead of `model`.
        dtype: with `fast`, the trunk and salience heads' dtype: float32, or bfloat16 (about
            2x faster on CPUs with AVX512-BF16, about 1e-2 relative error of the logits).

    Returns:
        task -> (..., T) frame outputs with T = `frontend.n_frames(N)`, or (...) track
        outputs.
    """
    fe = model.frontend
    n_frames = fe.n_frames(len(audio))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in output_kinds}
    weights: list[int] = []
    source = ArrayAudio(audio, fe.sr)
    for f0, f1, outputs in chunk_outputs(
        model, source, output_kinds, chunk_seconds, margin_seconds, fast, dtype
    ):
        for name in output_kinds:
            parts[name].append(outputs[name])
        weights.append(f1 - f0)
    result: dict[str, np.ndarray] = {}
    for name, kind in output_kinds.items():
        if kind == "frames":
            result[name] = np.concatenate(parts[name], axis=-1)
            assert result[name].shape[-1] == n_frames, (result[name].shape, n_frames)
        else:
            w = np.asarray(weights, dtype=np.float64)
            result[name] = np.tensordot(w / w.sum(), np.stack(parts[name]), axes=1)
    return result


@torch.no_grad()
def chunk_outputs(
    model: MultiTaskModel,
    audio: Any,
    output_kinds: dict[str, str],
    chunk_seconds: float = 30.0,
    margin_seconds: float = 3.0,
    fast: bool = True,
    dtype: torch.dtype = torch.float32,
    needs_from: Callable[[], int] | None = None,
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """The model's outputs on each chunk of `chunk_plan`, one chunk at a time.

    Args:
        model, output_kinds, chunk_seconds, margin_seconds, fast, dtype: as `infer_track`.
        audio: the track's samples at the front end's rate: anything with ``n`` (the length),
            ``get(a, b)`` (the mono samples [a, b) first in a tuple) and ``release(upto)``
            (`ArrayAudio`, `mir.predict.AudioStream`).
        needs_from: the earliest sample the caller still needs from `audio` once it has
            handled a chunk (default: none); earlier samples are released.

    Yields:
        (f0, f1, outputs): the chunk's core frames [f0, f1) and task -> float32 output (no
        batch axis): its core frames (..., f1 - f0) for ``frames`` tasks, the chunk's
        whole output for ``track`` tasks.
    """
    if fast:
        from mir.models.fused import inference_model

        model = inference_model(model, dtype)  # type: ignore[assignment]
    fe = model.frontend
    hop = fe.hop
    device = next(model.parameters()).device
    plan = chunk_plan(fe, audio.n, chunk_seconds, margin_seconds)
    for k, (f0, f1, a, b) in enumerate(plan):
        mono = audio.get(a, b)[0]
        x = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)).to(device)[None]
        first = f0 - a // hop  # index of the core's first frame in the chunk's frames
        if getattr(model, "context", None) is not None:  # the fast copy reads only the core
            outputs, _ = model(x, keep=(first, first + f1 - f0))
        else:
            outputs, _ = model(x)
        chunk: dict[str, np.ndarray] = {}
        for name, kind in output_kinds.items():
            out = outputs[name][0].float().cpu().numpy()
            chunk[name] = out[..., first : first + (f1 - f0)] if kind == "frames" else out
        del outputs
        yield f0, f1, chunk
        nxt = plan[k + 1][2] if k + 1 < len(plan) else audio.n
        audio.release(min(nxt, needs_from()) if needs_from is not None else nxt)


def return_freed_memory() -> None:
    """Have glibc's allocator hand large freed buffers back to the system at once.

    glibc raises its mmap threshold to the size of each large buffer freed, so later
    buffers of that size come from the heap, where the small arrays a long track keeps
    (decoded f0s, chunk outputs) pin them: the resident set then grows with the input's
    length (about 2.5 MB a minute in `mir.predict`, measured) although nothing more is
    held. A fixed threshold (glibc's default, 128 KiB) keeps every chunk's buffers in
    their own mappings. Elsewhere (no glibc ``mallopt``) this does nothing.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD


class ArrayAudio:
    """`chunk_outputs`'s audio interface over a mono track already in memory."""

    def __init__(self, audio: np.ndarray, sr: int) -> None:
        self.mono = np.asarray(audio, dtype=np.float32)
        self.n = self.n_in = len(self.mono)
        self.sr = self.sr_in = int(sr)
        self.channels = 1

    def get(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        mono = self.mono[a:b]
        return mono, mono[None]

    def release(self, upto: int) -> None:
        pass


def chunk_plan(
    fe: object, n: int, chunk_seconds: float, margin_seconds: float
) -> list[tuple[int, int, int, int]]:
    """The chunks `infer_track` cuts a track of `n` samples into.

    Returns:
        (f0, f1, a, b) per chunk: its core frames [f0, f1) and the samples [a, b) it reads
        (the core plus `margin_seconds` of context each side; `a` is on a frame boundary).
    """
    hop = fe.hop  # type: ignore[attr-defined]
    n_frames = fe.n_frames(n)  # type: ignore[attr-defined]
    core = max(1, int(round(chunk_seconds * fe.sr / hop)))  # type: ignore[attr-defined]
    margin = int(np.ceil(margin_seconds * fe.sr / hop))  # type: ignore[attr-defined]
    plan = []
    for f0 in range(0, n_frames, core):
        f1 = min(f0 + core, n_frames)
        plan.append((f0, f1, max(0, f0 - margin) * hop, min(n, (f1 + margin) * hop)))
    return plan
