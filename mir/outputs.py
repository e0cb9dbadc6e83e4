"""Writers for every task's estimate, in the formats other tools read back.

Every writer is atomic (a temporary file renamed into place, `mir.audio.atomic_write`), so
an interrupted run never leaves a truncated file.

Conventions:
    * f0 (melody, bass, vocal): CSV, one ``time,f0`` row per frame, in s and Hz, 0 Hz =
      unvoiced; read back by ``mir_eval.io.load_time_series(path, delimiter=",")``
      (mir_eval >= 0.8 splits on whitespace only by default; 0.7 read commas too).
    * Multi-f0: one ``time<TAB>f1<TAB>f2...`` line per frame (a frame with no f0 is just
      its time); read back by ``mir_eval.io.load_ragged_time_series``.
    * Notes (MIDI): from a single-voice f0, runs of voiced frames that stay within
      +-`tolerance_cents` of the run's median pitch, split where the pitch leaves that
      band; from multi-f0, runs of consecutive frames holding the same rounded MIDI pitch.
      Notes shorter than `min_duration` (50 ms) are dropped. A note lasts from its first
      frame's time to its last frame's time plus one frame period.
    * Drums (MIDI): General-MIDI percussion (channel 10): kick 36, snare 38, closed hi-hat
      42, open hi-hat 46, tom 45, crash/cymbal 49, ride 51; 50 ms notes, velocity 100.
    * Beats and downbeats: one time in s per line (``mir_eval.io.load_events``); in JAMS,
      each beat's value is its position in the bar (1 = downbeat), null before the first
      downbeat.
    * Tags: JSON ``{"top": [{"tag", "score"}, ...], "scores": {tag: score}}``.
    * Stems: ``<source>.wav``, 32-bit float, at the input's rate and channel count.
    * JAMS (jams 0.3.5 namespaces): ``pitch_contour`` for f0 (index 0; unvoiced frames
      have frequency 0 and voiced false) and for multi-f0 (index = rank of the f0 in its
      frame, lowest first), ``note_hz`` for note events, ``onset`` for drums (value = class
      name), ``beat`` for beats, ``tag_open`` for tags (confidence = score). Each
      annotation's ``sandbox.task`` names the task that produced it.
"""

from __future__ import annotations

import json
import os
from array import array
from bisect import insort
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mir.audio import atomic_write, write_wav

GM_DRUMS: dict[str, int] = {
    "kick": 36,
    "bass_drum": 36,
    "snare": 38,
    "hihat": 42,
    "closed_hihat": 42,
    "hihat_closed": 42,
    "open_hihat": 46,
    "hihat_open": 46,
    "tom": 45,
    "toms": 45,
    "crash": 49,
    "cymbal": 49,
    "ride": 51,
}
"""Drum class name -> General-MIDI percussion key (channel 10)."""

DRUM_NOTE_SECONDS = 0.05
"""Length of a drum MIDI note, in s (percussion ignores note-offs; some tools need one)."""

Note = tuple[float, float, float]
"""(onset s, offset s, pitch Hz)."""


def _write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _frame_period(times: np.ndarray) -> float:
    return float(np.median(np.diff(times))) if len(times) > 1 else 0.0


def hz_to_midi(hz: np.ndarray | float) -> np.ndarray:
    """Frequency in Hz -> fractional MIDI pitch (A4 = 440 Hz = 69)."""
    return 69.0 + 12.0 * np.log2(np.asarray(hz, dtype=np.float64) / 440.0)


# -- time series ---------------------------------------------------------------------------
def write_f0(path: str | os.PathLike[str], times: np.ndarray, f0: np.ndarray) -> Path:
    """Write a single-voice f0 series as two-column CSV (time s, f0 Hz; 0 = unvoiced).

    Read it back with ``mir_eval.io.load_time_series(path, delimiter=",")``.
    """
    times = np.asarray(times, dtype=np.float64)
    f0 = np.asarray(f0, dtype=np.float64)
    if times.shape != f0.shape:
        raise ValueError(f"times {times.shape} and f0 {f0.shape} differ in shape")
    return _write_lines(path, (f"{t:.6f},{f:.5f}\n" for t, f in zip(times, f0, strict=True)))


def _write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> Path:
    """Write lines one at a time (a long track's text is never held whole), atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(lines)

    return atomic_write(path, write)


class Ragged(Sequence[np.ndarray]):
    """Multi-f0 frames stored flat: frame i is ``values[offsets[i]:offsets[i + 1]]``.

    Holds one array of all f0s and one of offsets, instead of one array object per frame.
    With `table`, `values` are indices into it (a frequency grid, e.g. the front end's
    bins) kept in their own small dtype: 2 bytes an f0 as uint16 instead of 8, and each
    frame's f0s are looked up (as float64, the same numbers) when it is read.
    """

    def __init__(
        self, values: np.ndarray, counts: np.ndarray, table: np.ndarray | None = None
    ) -> None:
        self.table = None if table is None else np.asarray(table, dtype=np.float64)
        self.values = np.asarray(values) if table is not None else np.asarray(values, np.float64)
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _frame(self, i: int) -> np.ndarray:
        v = self.values[self.offsets[i] : self.offsets[i + 1]]
        return v if self.table is None else self.table[v]

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._frame(i)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._frame(i)


def grid_indices(table: np.ndarray, hz: np.ndarray) -> np.ndarray:
    """The indices (uint16) of frequencies `hz` taken from the ascending grid `table`.

    Raises:
        ValueError: a frequency is not on the grid.
    """
    table = np.asarray(table, dtype=np.float64)
    idx = np.searchsorted(table, hz).clip(0, max(len(table) - 1, 0))
    if len(hz) and not np.array_equal(table[idx], hz):
        raise ValueError("frequencies off the grid")
    return idx.astype(np.uint16)


def write_multif0(
    path: str | os.PathLike[str], times: np.ndarray, freqs: Sequence[np.ndarray]
) -> Path:
    """Write multi-f0 as ``time<TAB>f1<TAB>f2...`` lines (one per frame, Hz ascending)."""
    if len(times) != len(freqs):
        raise ValueError(f"{len(times)} times but {len(freqs)} frames of f0s")

    def lines() -> Iterator[str]:
        for t, fs in zip(times, freqs, strict=True):
            cols = [f"{float(t):.6f}"] + [f"{float(f):.5f}" for f in np.sort(np.asarray(fs))]
            yield "\t".join(cols) + "\n"

    return _write_lines(path, lines())


def write_beats(path: str | os.PathLike[str], times: np.ndarray) -> Path:
    """Write event times (beats), one time in s per line."""
    return _write_text(path, "".join(f"{float(t):.6f}\n" for t in np.asarray(times).ravel()))


def write_tags(
    path: str | os.PathLike[str], tags: Sequence[str], scores: np.ndarray, top_k: int = 5
) -> Path:
    """Write tag scores as JSON: the `top_k` best tags with scores, and every tag's score."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(tags) != len(scores):
        raise ValueError(f"{len(tags)} tags but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")[: max(0, int(top_k))]
    data = {
        "top": [{"tag": tags[i], "score": float(scores[i])} for i in order],
        "scores": {t: float(s) for t, s in zip(tags, scores, strict=True)},
    }
    return _write_text(path, json.dumps(data, indent=2) + "\n")


def write_stems(
    folder: str | os.PathLike[str], sources: Sequence[str], stems: np.ndarray, sr: int
) -> list[Path]:
    """Write each source as ``<folder>/<source>.wav``.

    Args:
        sources: source names, in the order of `stems`.
        stems: (S, N) mono or (S, C, N) multichannel waveforms.
        sr: sample rate in Hz.
    """
    stems = np.asarray(stems, dtype=np.float32)
    if stems.shape[0] != len(sources):
        raise ValueError(f"{len(sources)} sources but {stems.shape[0]} stems")
    folder = Path(folder)
    return [write_wav(folder / f"{s}.wav", x, sr) for s, x in zip(sources, stems, strict=True)]


# -- note segmentation ----------------------------------------------------------------------
def f0_to_notes(
    times: np.ndarray,
    f0: np.ndarray,
    min_duration: float = 0.05,
    tolerance_cents: float = 50.0,
) -> np.ndarray:
    """Segment a single-voice f0 series into notes.

    A note is a run of voiced frames whose pitches stay within +-`tolerance_cents` of the
    run's running median; a frame outside that band, or an unvoiced frame, ends it.

    Args:
        times: (T,) frame times in s, evenly spaced.
        f0: (T,) f0 in Hz, 0 (or negative) = unvoiced.
        min_duration: shortest note kept, in s.
        tolerance_cents: allowed deviation from the note's median pitch, in cents.

    Returns:
        (n, 3) float64 notes (onset s, offset s, median pitch Hz), in time order.
    """
    times = np.asarray(times, dtype=np.float64)
    f0 = np.asarray(f0, dtype=np.float64)
    period = _frame_period(times)
    tol = tolerance_cents / 100.0  # semitones
    notes = array("d")  # onset, offset, Hz of each note, flat: 24 bytes a note
    run: list[int] = []  # frame indices of the current note
    sorted_pitch: list[float] = []  # its pitches (MIDI), kept sorted for the median

    def close() -> None:
        if not run:
            return
        onset, offset = times[run[0]], times[run[-1]] + period
        if offset - onset >= min_duration - 1e-9:
            notes.extend((float(onset), float(offset), float(np.median(f0[run]))))
        run.clear()
        sorted_pitch.clear()

    for i, hz in enumerate(f0):
        if hz <= 0:
            close()
            continue
        pitch = float(hz_to_midi(hz))
        if run:
            k = len(sorted_pitch)
            median = 0.5 * (sorted_pitch[(k - 1) // 2] + sorted_pitch[k // 2])
            if abs(pitch - median) > tol:
                close()
        run.append(i)
        insort(sorted_pitch, pitch)
    close()
    return np.frombuffer(notes, dtype=np.float64).reshape(-1, 3).copy()


def multif0_to_notes(
    times: np.ndarray, freqs: Sequence[np.ndarray], min_duration: float = 0.05
) -> np.ndarray:
    """Segment multi-f0 into notes: runs of consecutive frames with the same MIDI pitch.

    Args:
        times: (T,) frame times in s, evenly spaced.
        freqs: T arrays of active f0s in Hz.
        min_duration: shortest note kept, in s.

    Returns:
        (n, 3) float64 notes (onset s, offset s, median Hz of the run), sorted by onset
        then pitch (a long track's notes are never Python tuples).
    """
    times = np.asarray(times, dtype=np.float64)
    period = _frame_period(times)
    active: dict[int, tuple[int, list[float]]] = {}  # MIDI pitch -> (first frame, Hz values)
    notes = array("d")  # onset, offset, Hz of each note, flat: 24 bytes a note

    def close(pitch: int, last: int) -> None:
        first, hz = active.pop(pitch)
        onset, offset = times[first], times[last] + period
        if offset - onset >= min_duration - 1e-9:
            notes.extend((float(onset), float(offset), float(np.median(hz))))

    for i, fs in enumerate(freqs):
        fs = np.asarray(fs, dtype=np.float64)
        fs = fs[fs > 0]
        here: dict[int, float] = {}
        for hz, p in zip(fs, np.rint(hz_to_midi(fs)).astype(int), strict=True):
            here.setdefault(int(p), float(hz))
        for p in [p for p in active if p not in here]:
            close(p, i - 1)
        for p, hz in here.items():
            if p in active:
                active[p][1].append(hz)
            else:
                active[p] = (i, [hz])
    for p in list(active):
        close(p, len(times) - 1)
    out = np.frombuffer(notes, dtype=np.float64).reshape(-1, 3)
    return out[np.lexsort((out[:, 2], out[:, 0]))]  # stable, as sorting by (onset, Hz)


# -- MIDI -----------------------------------------------------------------------------------
_TICKS_PER_BEAT = 960
_TEMPO = 500_000  # microseconds a beat: 120 bpm, so a tick is 1/1920 s (~0.5 ms)


def _varlen(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _write_midi(
    path: str | os.PathLike[str],
    starts: np.ndarray,
    ends: np.ndarray,
    pitches: np.ndarray,
    program: int,
    channel: int,
    name: str,
) -> Path:
    """Write one instrument's notes (velocity 100) as a type-1 MIDI file: the bytes
    ``pretty_midi`` writes for them (960 ticks a beat at 120 bpm; a timing track; events
    by tick, then pitch, a note's end before a start of the same pitch), built from arrays,
    so a long track's notes are never Python objects (pretty_midi and mido hold about
    0.8 kB a note while writing)."""
    scale = 60.0 / (120.0 * _TICKS_PER_BEAT)  # s a tick, as pretty_midi computes it
    n = len(starts)
    ticks = np.rint(np.concatenate([starts, ends]).astype(np.float64) / scale).astype(np.int64)
    notes = np.concatenate([pitches, pitches]).astype(np.int64)
    vel = np.concatenate([np.full(n, 100), np.zeros(n)]).astype(np.int64)
    order = np.lexsort((vel, notes, ticks))
    ticks, notes, vel = ticks[order], notes[order], vel[order]
    deltas = np.diff(ticks, prepend=0)
    track = bytearray()
    if name:
        text = name.encode("ascii")
        track += b"\x00\xff\x03" + _varlen(len(text)) + text
    track += bytes([0, 0xC0 | channel, program])
    status = 0x90 | channel
    for i, (d, k, v) in enumerate(zip(deltas.tolist(), notes.tolist(), vel.tolist(), strict=True)):
        track += _varlen(d) + (bytes([status, k, v]) if i == 0 else bytes([k, v]))
    track += b"\x01\xff\x2f\x00"  # end of track one tick after the last event
    timing = (
        b"\x00\xff\x51\x03" + _TEMPO.to_bytes(3, "big") + b"\x00\xff\x58\x04\x04\x02\x18\x08"
        b"\x01\xff\x2f\x00"
    )
    data = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + (2).to_bytes(2, "big")
    data += _TICKS_PER_BEAT.to_bytes(2, "big")
    for chunk in (timing, bytes(track)):
        data += b"MTrk" + len(chunk).to_bytes(4, "big") + chunk
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_notes_midi(
    path: str | os.PathLike[str],
    notes: Sequence[Note] | np.ndarray,
    program: int = 0,
    name: str = "",
) -> Path:
    """Write notes (onset s, offset s, Hz) as a one-track MIDI file, pitches rounded."""
    arr = np.asarray(notes, dtype=np.float64).reshape(-1, 3)
    pitches = np.clip(np.rint(hz_to_midi(arr[:, 2])), 0, 127).astype(np.int64)
    return _write_midi(path, arr[:, 0], arr[:, 1], pitches, int(program), 0, name)


def write_drums_midi(
    path: str | os.PathLike[str], classes: Sequence[str], onsets: Sequence[np.ndarray]
) -> tuple[Path, list[str]]:
    """Write drum onsets as General-MIDI percussion (channel 10).

    Args:
        classes: drum class names, mapped with `GM_DRUMS` (case-insensitive).
        onsets: onset times in s, one array per class.

    Returns:
        The path, and the classes that have no General-MIDI key (left out of the file).
    """
    unmapped = []
    times, keys = [], []
    for cls, t in zip(classes, onsets, strict=True):
        key = GM_DRUMS.get(cls.lower().replace("-", "_").replace(" ", "_"))
        if key is None:
            unmapped.append(cls)
            continue
        t = np.asarray(t, dtype=np.float64).ravel()
        times.append(t)
        keys.append(np.full(len(t), key, dtype=np.int64))
    start = np.concatenate(times) if times else np.zeros(0)
    pitch = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    path = _write_midi(path, start, start + DRUM_NOTE_SECONDS, pitch, 0, 9, "drums")
    return path, unmapped


# -- JAMS -----------------------------------------------------------------------------------
def _annotation(namespace: str, task: str, duration: float) -> Any:
    import jams

    ann = jams.Annotation(namespace=namespace, time=0.0, duration=float(duration))
    ann.annotation_metadata = jams.AnnotationMetadata(
        data_source="mir.predict", annotation_tools="mir"
    )
    ann.sandbox.update(task=task)
    return ann


@dataclass
class LazyAnnotation:
    """A JAMS annotation whose observations are produced only while the file is written
    (`write_jams` streams them), so a long track's frame-wise f0 is never held as objects.

    ``rows()`` yields observations as dicts (time, duration, value, confidence).
    """

    namespace: str
    task: str
    duration: float
    rows: Callable[[], Iterator[dict[str, Any]]]

    def materialise(self, limit: int | None = None) -> Any:
        """The jams annotation (its first `limit` observations only, if given)."""
        ann = _annotation(self.namespace, self.task, self.duration)
        for i, row in enumerate(self.rows()):
            if limit is not None and i >= limit:
                break
            ann.append(**row)
        return ann


def f0_rows(times: np.ndarray, f0: np.ndarray) -> Iterator[dict[str, Any]]:
    """``pitch_contour`` observations of a single-voice f0 series (one contour, index 0)."""
    for t, hz in zip(np.asarray(times, float), np.asarray(f0, float), strict=True):
        voiced = bool(hz > 0)
        value = {"index": 0, "frequency": float(hz) if voiced else 0.0, "voiced": voiced}
        yield {"time": float(t), "duration": 0.0, "value": value, "confidence": None}


def multif0_rows(times: np.ndarray, freqs: Sequence[np.ndarray]) -> Iterator[dict[str, Any]]:
    """``pitch_contour`` observations of multi-f0: index = rank of the f0 in its frame."""
    for t, fs in zip(np.asarray(times, float), freqs, strict=True):
        for k, hz in enumerate(np.sort(np.asarray(fs, float))):
            value = {"index": k, "frequency": float(hz), "voiced": True}
            yield {"time": float(t), "duration": 0.0, "value": value, "confidence": None}


def notes_rows(notes: Sequence[Note] | np.ndarray) -> Iterator[dict[str, Any]]:
    """``note_hz`` observations of note events ((n, 3) onset s, offset s, Hz)."""
    for onset, offset, hz in np.asarray(notes, dtype=np.float64).reshape(-1, 3).tolist():
        yield {"time": onset, "duration": offset - onset, "value": hz, "confidence": None}


def f0_annotation(task: str, times: np.ndarray, f0: np.ndarray, duration: float) -> Any:
    """A ``pitch_contour`` annotation of a single-voice f0 series (one contour, index 0)."""
    return LazyAnnotation("pitch_contour", task, duration, lambda: f0_rows(times, f0)).materialise()


def multif0_annotation(
    task: str, times: np.ndarray, freqs: Sequence[np.ndarray], duration: float
) -> Any:
    """A ``pitch_contour`` annotation of multi-f0: index = rank of the f0 in its frame."""
    rows = lambda: multif0_rows(times, freqs)  # noqa: E731
    return LazyAnnotation("pitch_contour", task, duration, rows).materialise()


def notes_annotation(task: str, notes: Sequence[Note] | np.ndarray, duration: float) -> Any:
    """A ``note_hz`` annotation of note events."""
    return LazyAnnotation("note_hz", task, duration, lambda: notes_rows(notes)).materialise()


def onsets_annotation(
    task: str, classes: Sequence[str], onsets: Sequence[np.ndarray], duration: float
) -> LazyAnnotation:
    """An ``onset`` annotation of drum onsets, in time order (then class name); each
    observation's value is its class. Lazy: `write_jams` streams its observations from the
    arrays (`LazyAnnotation.materialise` gives the jams annotation)."""
    names = [str(c) for c in classes]
    times = np.concatenate([np.asarray(t, np.float64).ravel() for t in onsets] or [np.zeros(0)])
    which = np.concatenate(
        [np.full(len(np.asarray(t).ravel()), k) for k, t in enumerate(onsets)] or [np.zeros(0)]
    ).astype(np.int64)
    rank = np.argsort(np.argsort(np.array(names, dtype=object), kind="stable"), kind="stable")
    order = np.lexsort((rank[which] if len(names) else which, times))

    def rows() -> Iterator[dict[str, Any]]:
        for i in order:
            value = names[which[i]]
            yield {"time": float(times[i]), "duration": 0.0, "value": value, "confidence": None}

    return LazyAnnotation("onset", task, duration, rows)


def beat_positions(beats: np.ndarray, downbeats: np.ndarray | None) -> list[int | None]:
    """Metrical position of each beat: 1 at a downbeat (within 1 ms), counting up after
    it; None before the first downbeat or when there are no downbeats."""
    down = np.asarray(downbeats if downbeats is not None else [], dtype=np.float64)
    out: list[int | None] = []
    pos: int | None = None
    for t in np.asarray(beats, dtype=np.float64):
        if len(down) and np.min(np.abs(down - t)) <= 1e-3:
            pos = 1
        elif pos is not None:
            pos += 1
        out.append(pos)
    return out


def beats_annotation(
    task: str, times: np.ndarray, duration: float, downbeats: np.ndarray | None = None
) -> LazyAnnotation:
    """A ``beat`` annotation; values are metrical positions (1 = downbeat) when known. Lazy:
    `write_jams` streams its observations."""
    times = np.asarray(times, float).ravel()

    def rows() -> Iterator[dict[str, Any]]:
        for t, pos in zip(times, beat_positions(times, downbeats), strict=True):
            yield {"time": float(t), "duration": 0.0, "value": pos, "confidence": None}

    return LazyAnnotation("beat", task, duration, rows)


def tags_annotation(task: str, tags: Sequence[str], scores: np.ndarray, duration: float) -> Any:
    """A ``tag_open`` annotation over the whole track: every tag, confidence = score."""
    ann = _annotation("tag_open", task, duration)
    for tag, s in zip(tags, np.asarray(scores, float), strict=True):
        ann.append(time=0.0, duration=float(duration), value=str(tag), confidence=float(s))
    return ann


def write_jams(
    path: str | os.PathLike[str],
    annotations: Sequence[Any],
    duration: float,
    title: str = "",
    sandbox: Mapping[str, Any] | None = None,
) -> Path:
    """Write annotations (jams annotations or `LazyAnnotation`s) to one JAMS file.

    jams validates every observation against its namespace's schema, which takes minutes
    for a long track's frame-wise f0; the schema is checked here on the first
    `_VALIDATE_OBSERVATIONS` observations of each annotation. The file has the layout of
    ``jams.JAMS.save``; a lazy annotation's observations are serialised one at a time as
    they are written, so memory does not grow with their number.

    Raises:
        jams.SchemaError: an annotation does not fit its namespace.
    """
    import jams

    def build(anns: Sequence[Any]) -> Any:
        jam = jams.JAMS()
        jam.file_metadata.duration = float(duration)
        jam.file_metadata.title = title
        if sandbox:
            jam.sandbox.update(**dict(sandbox))
        jam.annotations.extend(anns)
        return jam

    heads = [
        a.materialise(_VALIDATE_OBSERVATIONS)
        if isinstance(a, LazyAnnotation)
        else _head(a, _VALIDATE_OBSERVATIONS)
        for a in annotations
    ]
    build(heads).validate(strict=True)
    lazy = {i: a for i, a in enumerate(annotations) if isinstance(a, LazyAnnotation)}
    skeleton = [a.materialise(0) if i in lazy else a for i, a in enumerate(annotations)]
    doc = build(skeleton).__json__
    for i in lazy:
        doc["annotations"][i]["data"] = f"@@mir-data-{i}@@"
    text = json.dumps(doc, indent=2)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            pos = 0
            for i, ann in lazy.items():
                marker = json.dumps(f"@@mir-data-{i}@@")
                at = text.index(marker, pos)
                f.write(text[pos:at])
                f.write("[")
                for k, row in enumerate(ann.rows()):
                    f.write(", " if k else "")
                    f.write(json.dumps(row))
                f.write("]")
                pos = at + len(marker)
            f.write(text[pos:])

    return atomic_write(path, write, suffix=".jams")


_VALIDATE_OBSERVATIONS = 32


def _head(ann: Any, n: int) -> Any:
    """A copy of `ann` with only its first `n` observations (for a quick schema check)."""
    import jams

    short = jams.Annotation(
        namespace=ann.namespace,
        time=ann.time,
        duration=ann.duration,
        annotation_metadata=ann.annotation_metadata,
        sandbox=ann.sandbox,
    )
    for obs in list(ann.data)[:n]:
        short.append(
            time=obs.time, duration=obs.duration, value=obs.value, confidence=obs.confidence
        )
    return short
