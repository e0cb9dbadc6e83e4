"""How each task handles a track's model output as it arrives, chunk by chunk.

`MirModule.analyse` (the one inference path, used by ``mir.predict``, ``mir.evaluate``,
validation and test) runs the model over a track in chunks and feeds each task's core
outputs to that task's `Stream`. A task picks its stream with `Task.stream`: the default,
`RawStream`, keeps the raw output and decodes it at the end; f0 and mask-separation tasks
decode or write as they go, so what is kept grows by a few bytes per frame.

A stream made with an output folder writes the task's files when finished
(``mir.predict``); one made without gives its decoded estimate (`Stream.estimate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mir.tasks.base import OutputContext as FileContext


class Stream:
    """What one task does with each chunk's core outputs, and at the end of the file."""

    def needs_from(self) -> int:
        """The earliest model-rate sample this task still needs from the audio stream."""
        return 1 << 62

    def feed(self, f0: int, f1: int, out: np.ndarray) -> None:
        """One chunk's output: its core frames [f0, f1) (``frames`` tasks) or the chunk's
        whole output (``track`` tasks)."""
        raise NotImplementedError

    def finish(self, ctx: FileContext) -> list[Any]:
        """Write the task's outputs (`Task.write_outputs`); returns its JAMS annotations."""
        raise NotImplementedError

    def estimate(self, track: Any) -> Any:
        """The decoded estimate, once fed every chunk (a stream made with no output
        folder); `track` is what `Task.decode` reads."""
        raise NotImplementedError

    def abort(self) -> None:
        pass


class SingleF0Stream(Stream):
    """melody/bass/vocal: each chunk decoded at once (argmax per frame); f0 kept (8 bytes a
    frame), the CSV, notes and JAMS contour written at the end without per-frame objects."""

    def __init__(self, name: str, task: Any) -> None:
        self.name, self.task, self.stub, self.parts = name, task, _stub(task), []

    def feed(self, f0: int, f1: int, out: np.ndarray) -> None:
        self.parts.append(self.task.decode(out, self.stub)[1])

    def estimate(self, track: Any) -> Any:
        f0 = np.concatenate(self.parts)
        return self.task.grid.frame_times(len(f0)), f0

    def finish(self, ctx: FileContext) -> list[Any]:
        return self.task.write_outputs(ctx, self.estimate(None))


class MultiF0Stream(Stream):
    """multi-f0: each chunk decoded at once (peaks per frame); the f0s kept flat and compact
    (`mir.outputs.Ragged` over the front end's bins: 2 bytes an f0, 2 a frame)."""

    def __init__(self, name: str, task: Any) -> None:
        self.name, self.task, self.stub = name, task, _stub(task)
        self.values: list[np.ndarray] = []  # bin indices (uint16)
        self.counts: list[np.ndarray] = []  # f0s per frame (uint16)

    def feed(self, f0: int, f1: int, out: np.ndarray) -> None:
        from mir.outputs import grid_indices

        _, freqs = self.task.decode(out, self.stub)
        self.counts.append(np.array([len(f) for f in freqs], dtype=np.uint16))
        hz = np.concatenate(freqs) if freqs else np.zeros(0)
        self.values.append(grid_indices(self.task.grid.freqs, hz))

    def freqs(self) -> Any:
        from mir.outputs import Ragged

        values = np.concatenate(self.values)
        counts = np.concatenate(self.counts)
        self.values, self.counts = [values], [counts]
        return Ragged(values, counts, table=self.task.grid.freqs)

    def estimate(self, track: Any) -> Any:
        freqs = self.freqs()
        return self.task.grid.frame_times(len(freqs)), list(freqs)

    def finish(self, ctx: FileContext) -> list[Any]:
        freqs = self.freqs()
        return self.task.write_outputs(ctx, (self.task.grid.frame_times(len(freqs)), freqs))


class SeparationStream(Stream):
    """Mask separation: each block of frames is masked and inverted per channel as soon as
    the masks around it are known (the same samples as one pass over the track, see
    `mir.models.unet.masked_istft_blocks`), resampled to the input's rate by a soxr stream
    and appended to the stems' wav files. The Jansson U-Net's held masks (``fullband``) are
    interpolated onto the STFT a block at a time (`JanssonUNet.stft_masks` on the frames
    held), so only the masks around the current block are kept."""

    def __init__(self, name: str, task: Any, audio: Any, out_dir: Path | None) -> None:
        from mir.audio import WavWriter

        fe = task.fe
        self.name, self.task, self.fe, self.audio = name, task, fe, audio
        self.unet = task.unet
        self.m = fe.n_fft // fe.hop + 1  # frames an STFT frame reaches (as masked_istft_blocks)
        self.reach = 0 if self.unet is None else self.unet.reach  # held frames a block reads
        self.n_frames = fe.n_frames(audio.n)
        self.masks = np.zeros((len(task.sources), 0, 0), np.float32)
        self.masks_start = 0  # global frame of self.masks[:, :, 0]
        self.done = 0  # frames [0, done) are separated and written
        c = audio.channels
        self.writers: list[Any] = (
            [WavWriter(out_dir / f"{s}.wav", audio.sr_in, c) for s in task.sources]
            if out_dir is not None
            else [ArraySink(audio.n_in) for _ in task.sources]
        )
        self.resamplers = None  # back to the input's rate
        if audio.sr_in != fe.sr:
            import soxr

            self.resamplers = [
                soxr.ResampleStream(fe.sr, audio.sr_in, c, dtype="float32", quality="HQ")
                for _ in task.sources
            ]

    def needs_from(self) -> int:
        return max(0, self.done - 2 * self.m) * self.fe.hop

    def feed(self, f0: int, f1: int, out: np.ndarray) -> None:
        core = out
        keep = self.done - 2 * self.m - self.reach
        held = self.masks[:, :, max(0, keep - self.masks_start) :]
        self.masks_start += self.masks.shape[2] - held.shape[2]
        self.masks = np.concatenate([held, core], axis=2) if held.size else core.copy()
        known = f1
        upto = self.n_frames if known >= self.n_frames else known - 2 * self.m - self.reach
        if upto > self.done:
            self._separate(self.done, upto)

    def _separate(self, t0: int, t1: int) -> None:
        import torch

        from mir.models.unet import masked_istft_blocks

        fe, hop, n = self.fe, self.fe.hop, self.audio.n
        s0, s1 = max(0, t0 - 2 * self.m), min(self.n_frames, t1 + 2 * self.m)
        # as many samples as give exactly frames [s0, s1) (1 + N // hop); the kept frames'
        # windows lie inside, since 2 * m frames exceed n_fft / 2 samples
        a, b = s0 * hop, (n if s1 == self.n_frames else (s1 - 1) * hop + 1)
        _, chans = self.audio.get(a, b)
        dev = next((buf.device for buf in fe.buffers()), torch.device("cpu"))
        i = s0 - self.masks_start
        if self.unet is None:
            masks = torch.from_numpy(np.ascontiguousarray(self.masks[:, :, i : i + s1 - s0]))
        else:
            held = torch.from_numpy(np.ascontiguousarray(self.masks)).to(dev)
            masks = self.unet.stft_masks(held, n, s0, s1, self.masks_start, self.n_frames)
        masks = masks.to(dev)
        lo, hi = t0 * hop - a, min(n, t1 * hop) - a
        per_channel = []
        with torch.no_grad():
            for x in chans:
                seg = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
                est = masked_istft_blocks(
                    fe, seg, lambda p, q: masks[..., p:q], masks.shape[0], block_frames=s1 - s0
                )
                per_channel.append(est[:, lo:hi].cpu().numpy())
        stems = np.stack(per_channel, axis=1)  # (S, C, L)
        last = t1 >= self.n_frames
        for k, writer in enumerate(self.writers):
            block = stems[k].T  # (L, C)
            if self.resamplers is not None:
                block = self.resamplers[k].resample_chunk(np.ascontiguousarray(block), last=last)
            room = self.audio.n_in - writer.frames
            block = block[:room]
            writer.write(block[:, 0] if self.audio.channels == 1 else block)
        self.done = t1

    def finish(self, ctx: FileContext) -> list[Any]:
        for writer in self.writers:
            missing = self.audio.n_in - writer.frames
            if missing > 0:
                shape = (missing,) if self.audio.channels == 1 else (missing, self.audio.channels)
                writer.write(np.zeros(shape, np.float32))
            writer.commit()
        return []

    def estimate(self, track: Any) -> Any:
        self.finish(None)  # type: ignore[arg-type]
        return np.stack([s.data for s in self.writers])

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()


class RawStream(Stream):
    """Any other task (drums, beats, tagging, the U-Net separation with ``reconstruct:
    paper``): its raw output is kept (a few values per frame, or one per track) and decoded
    at the end, as before. A task whose decoding reads the audio (`Task.decode_reads_audio`:
    the ``paper`` U-Net separation, whose 8192-Hz inverse STFT reads the whole track) keeps
    the audio stream's samples (the file is still read and resampled once)."""

    def __init__(self, name: str, task: Any, audio: Any = None) -> None:
        self.name, self.task, self.audio = name, task, audio
        self.parts: list[np.ndarray] = []
        self.weights: list[int] = []
        self.whole = audio is not None and task.decode_reads_audio

    def needs_from(self) -> int:
        return 0 if self.whole else 1 << 62

    def feed(self, f0: int, f1: int, out: np.ndarray) -> None:
        self.parts.append(out)
        self.weights.append(f1 - f0)

    def raw(self) -> np.ndarray:
        if self.task.output_kind == "frames":
            return np.concatenate(self.parts, axis=-1)
        w = np.asarray(self.weights, dtype=np.float64)
        return np.tensordot(w / w.sum(), np.stack(self.parts), axes=1)

    def finish(self, ctx: FileContext) -> list[Any]:
        from mir.data.track import Track

        ctx.raw[self.name] = self.raw()
        audio = np.zeros(0, np.float32)
        if self.whole:
            audio, channels = self.audio.get(0, self.audio.n)
            ctx.channels = channels
        track = Track(name=ctx.out_dir.name, audio=audio, sr=self.task.grid.sr)
        return self.task.write_outputs(ctx, self.task.decode(ctx.raw[self.name], track))

    def estimate(self, track: Any) -> Any:
        return self.task.decode(self.raw(), track)


class ArraySink:
    """`mir.audio.WavWriter`'s interface, into an array (a stem estimate in memory)."""

    def __init__(self, n: int) -> None:
        self.data = np.zeros(n, np.float32)
        self.frames = 0

    def write(self, block: np.ndarray) -> None:
        self.data[self.frames : self.frames + len(block)] = block
        self.frames += len(block)

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _stub(task: Any) -> Any:
    """The audio-less track a chunk's decoding reads (f0 decoding reads only the grid)."""
    from mir.data.track import Track

    return Track(name="", audio=np.zeros(0, np.float32), sr=task.grid.sr)
