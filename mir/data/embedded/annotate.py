"""Score to annotations for the embedded dataset: notes, beats, drums, f0, onsets, chords
and tags.

Everything before rendering is in MIDI ticks (`TPQ` per quarter note); the functions at
the end turn ticks into the annotations written beside the audio, in s and Hz.

Conventions:
    * Parts are read top to bottom in score order and named by role (`ROLES`): ``soprano``
      (the top part, the melody), ``alto``, ``tenor`` (a 3-part piece has no tenor) and
      ``bass`` (the lowest part).
    * f0 on frames ``k * hop / sr`` s, in Hz (equal temperament, A4 = 440 Hz), 0 Hz where
      unvoiced; within a chord the top note is the melody and the bottom note the bass.
    * Drum onsets by class of `DRUM_CLASSES`: ``kick`` (GM 36), ``snare`` (38) and
      ``hihat`` (42 and 46), in s.
    * Beats follow the score's measures: a pickup bar has beats but no downbeat.
    * Chords (majmin): the score cut into slices wherever a note starts or ends (as
      music21's ``chordify`` does), each slice named from music21's root and triad quality
      of its sounding pitches: ``<root>:maj`` or ``<root>:min`` (roots spelled with sharps),
      ``N`` where nothing sounds, ``X`` (unknown, left out of training and scoring) for
      other sonorities (diminished, augmented, a bare fifth, a single note). Repeated labels
      are merged; the intervals cover the audio from 0 s to its end.
    * Tags come from `EMBEDDED_TAGS`: instrument families, mode, tempo class and metre.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mir.data.embedded.corpus import unit_hash
from mir.data.singing import CONTROL_HOP

TPQ = 480  # MIDI ticks per quarter note
ROLES = ("soprano", "alto", "tenor", "bass")
DRUM_PROB = 0.8  # share of pieces with a drum part

EMBEDDED_TAGS: tuple[str, ...] = (
    "strings",
    "brass",
    "woodwinds",
    "organ",
    "piano",
    "guitar",
    "voice",
    "drums",
    "major",
    "minor",
    "slow",
    "medium",
    "fast",
    "duple",
    "triple",
)
"""Tag vocabulary: instrument families, mode, tempo class, metre (kept equal to the YAML)."""

# ---------------------------------------------------------------------------------------------
# Instruments (chosen when rendering; their families are tags)

# GM program (0-based) -> (name, tag family, lowest MIDI note, highest MIDI note).
PROGRAMS: dict[int, tuple[str, str, int, int]] = {
    0: ("acoustic grand piano", "piano", 21, 108),
    4: ("electric piano", "piano", 28, 103),
    16: ("drawbar organ", "organ", 24, 96),
    19: ("church organ", "organ", 24, 96),
    20: ("reed organ", "organ", 36, 96),
    24: ("nylon guitar", "guitar", 40, 84),
    25: ("steel guitar", "guitar", 40, 84),
    27: ("clean electric guitar", "guitar", 40, 86),
    40: ("violin", "strings", 55, 100),
    41: ("viola", "strings", 48, 88),
    42: ("cello", "strings", 36, 76),
    43: ("contrabass", "strings", 28, 60),
    48: ("string ensemble", "strings", 28, 96),
    52: ("choir aahs", "voice", 40, 84),
    53: ("voice oohs", "voice", 40, 84),
    54: ("synth voice", "voice", 40, 84),
    56: ("trumpet", "brass", 54, 82),
    57: ("trombone", "brass", 40, 72),
    58: ("tuba", "brass", 28, 58),
    60: ("french horn", "brass", 41, 77),
    61: ("brass section", "brass", 36, 84),
    68: ("oboe", "woodwinds", 58, 91),
    69: ("english horn", "woodwinds", 52, 81),
    70: ("bassoon", "woodwinds", 34, 72),
    71: ("clarinet", "woodwinds", 50, 91),
    73: ("flute", "woodwinds", 60, 96),
}
VOICE_PROGRAMS = (52, 53, 54)
ROLE_PROGRAMS: dict[str, tuple[int, ...]] = {
    "alto": (0, 4, 16, 19, 24, 25, 27, 40, 41, 48, 56, 60, 61, 68, 69, 71, 73),
    "tenor": (0, 4, 16, 19, 20, 24, 25, 27, 41, 42, 48, 57, 60, 61, 69, 70, 71),
    "bass": (0, 4, 16, 19, 42, 43, 48, 57, 58, 61, 70),
}
KICK, SNARE, HIHAT, OPEN_HIHAT = 36, 38, 42, 46
DRUM_CLASSES: dict[int, str] = {KICK: "kick", SNARE: "snare", HIHAT: "hihat", OPEN_HIHAT: "hihat"}


# ---------------------------------------------------------------------------------------------
# Score -> notes, beats and drums (all in MIDI ticks)


@dataclass
class Note:
    start: int  # ticks
    end: int  # ticks
    pitch: int  # MIDI, transposed
    velocity: int


@dataclass
class Beat:
    tick: int
    position: int  # beat index within the bar (0 = downbeat)
    bar: int  # bar index (-1 for a pickup)


def time_signature(score: object) -> object:
    from music21 import meter

    parts = list(score.parts)  # type: ignore[attr-defined]
    ts = parts[0].recurse().getElementsByClass(meter.TimeSignature).first() if parts else None
    return ts or meter.TimeSignature("4/4")


def part_notes(part: object, limit_tick: int) -> list[tuple[int, int, int]]:
    """(start tick, end tick, MIDI pitch) of the notes of one part starting before
    `limit_tick`, tied notes merged (linear; music21's stripTies is slow on long scores)."""
    from music21 import harmony

    open_notes: dict[int, list[int]] = {}
    out: list[list[int]] = []
    for el in part.flatten().notes:  # type: ignore[attr-defined]
        if isinstance(el, harmony.Harmony) or el.duration.quarterLength <= 0:
            continue  # chord symbols, grace notes
        start = round(float(el.offset) * TPQ)
        end = start + round(float(el.duration.quarterLength) * TPQ)
        for n in list(el.notes) if el.isChord else [el]:
            pitch = getattr(n, "pitch", None)
            if pitch is None:
                continue  # unpitched percussion
            tie = n.tie if n.tie is not None else (el.tie if el.isChord else None)
            prev = open_notes.get(pitch.midi)
            if (
                tie is not None
                and tie.type in ("stop", "continue")
                and prev
                and abs(prev[1] - start) <= 1
            ):
                prev[1] = end
                continue
            if start >= limit_tick:
                continue
            rec = [start, end, int(pitch.midi)]
            out.append(rec)
            open_notes[pitch.midi] = rec
    return sorted((s, e, p) for s, e, p in out)


# Krumhansl-Kessler key profiles (C major, C minor)
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_mode(notes: list[tuple[int, int, int]]) -> str:
    """``major`` or ``minor`` by Krumhansl-Schmuckler key finding on duration-weighted
    pitch classes (of the excerpt actually rendered)."""
    hist = np.zeros(12)
    for s, e, p in notes:
        hist[p % 12] += max(e - s, 1)
    if not hist.any():
        return "major"
    best = max(
        (np.corrcoef(hist, np.roll(profile, k))[0, 1], mode)
        for mode, profile in (("major", _MAJOR), ("minor", _MINOR))
        for k in range(12)
    )
    return best[1]


def beat_grid(score: object, ts: object, end_tick: int) -> list[Beat]:
    """Beats from the measures of the first part; a short first measure is a pickup."""
    from music21 import stream

    bar = round(ts.barDuration.quarterLength * TPQ)  # type: ignore[attr-defined]
    beat = round(ts.beatDuration.quarterLength * TPQ)  # type: ignore[attr-defined]
    count = int(ts.beatCount)  # type: ignore[attr-defined]
    measures = list(score.parts[0].getElementsByClass(stream.Measure))  # type: ignore[attr-defined]
    beats: list[Beat] = []
    if not measures:
        measures_ticks = [(t, bar) for t in range(0, end_tick, bar)]
    else:
        measures_ticks = [
            (round(float(m.offset) * TPQ), round(float(m.duration.quarterLength) * TPQ))
            for m in measures
        ]
    bar_index = 0
    for i, (start, length) in enumerate(measures_ticks):
        if length <= 0:
            continue
        if i == 0 and length < bar:  # pickup: beats counted back from the first barline
            k = 1
            while start + length - k * beat >= start:
                beats.append(Beat(start + length - k * beat, (count - k) % count, -1))
                k += 1
            continue
        k = 0
        while k * beat < length:
            beats.append(Beat(start + k * beat, k % count, bar_index))
            k += 1
        bar_index += 1
    beats.sort(key=lambda b: b.tick)
    return [b for b in beats if b.tick < end_tick]


def drum_part(
    beats: list[Beat], ts: object, beat_ticks: int, end_tick: int, bpm: float, rng
) -> list[Note]:
    """A seeded drum part on the beat grid: kick/snare backbone by metre, hi-hats on
    subdivisions, with syncopated kicks, ghost snares, dropped and open hats and fills."""
    count = int(ts.beatCount)  # type: ignore[attr-defined]
    division = int(ts.beatDivisionCount) or 2  # type: ignore[attr-defined]
    if count == 4:
        kicks, snares = {0, 2}, {1, 3}
    elif count == 3:
        kicks, snares = {0}, ({1, 2} if rng.random() < 0.5 else {2})
    elif count == 2:
        kicks, snares = {0}, {1}
    else:
        kicks, snares = {0}, {count // 2}
    hat_div = int(rng.choice([1, division, 2 * division] if bpm < 100 else [1, division]))
    p_sync = rng.uniform(0.0, 0.35)
    p_ghost = rng.uniform(0.0, 0.12)
    p_drop = rng.uniform(0.0, 0.1)
    p_open = rng.uniform(0.0, 0.4)
    phrase = int(rng.choice([2, 4, 8]))
    p_fill = rng.uniform(0.4, 0.9)
    fill_beats = 2 if count >= 4 and rng.random() < 0.4 else 1
    fill_div = 2 * division if bpm < 130 else division
    base = int(rng.integers(85, 115))

    events: dict[tuple[int, int], int] = {}

    def hit(tick: int, note: int, vel: int) -> None:
        if 0 <= tick < end_tick:
            vel = int(np.clip(vel + rng.integers(-8, 9), 25, 127))
            events[(tick, note)] = max(events.get((tick, note), 0), vel)

    bars = sorted({b.bar for b in beats})
    fill_bars = {
        bar for bar in bars if bar >= 0 and bar % phrase == phrase - 1 and rng.random() < p_fill
    }
    for b in beats:
        if b.bar < 0:  # pickup: hi-hats only
            hit(b.tick, HIHAT, base - 15)
            continue
        if b.bar in fill_bars and b.position >= count - fill_beats:
            step = beat_ticks // fill_div
            for j in range(fill_div):
                hit(b.tick + j * step, SNARE, base - 20 + 10 * j)
            continue
        if b.position in kicks and (b.position == 0 or rng.random() > 0.1):
            hit(b.tick, KICK, base + 5)
        if b.position in snares:
            hit(b.tick, SNARE, base)
        hat_step = beat_ticks // hat_div
        for j in range(hat_div):
            if rng.random() < p_drop:
                continue
            last_offbeat = b.position == count - 1 and j == hat_div - 1 and j > 0
            note = OPEN_HIHAT if last_offbeat and rng.random() < p_open else HIHAT
            hit(b.tick + j * hat_step, note, base - (10 if j == 0 else 25))
        if rng.random() < p_sync and (b.position + 1) % count not in snares:
            hit(b.tick + beat_ticks * (division - 1) // division, KICK, base - 5)
        for j in range(1, 2 * division):
            if rng.random() < p_ghost:
                hit(b.tick + j * beat_ticks // (2 * division), SNARE, 38)
    length = max(beat_ticks // 4, 1)
    return [
        Note(tick, min(tick + length, end_tick), note, vel)
        for (tick, note), vel in sorted(events.items())
    ]


def has_drum_part(corpus_path: str, seed: int) -> bool:
    """Whether a piece gets drums (probability `DRUM_PROB`), drawn on its own stream."""
    return unit_hash(f"drums:{seed}:{corpus_path}") < DRUM_PROB


# ---------------------------------------------------------------------------------------------
# Ticks -> annotations (s, Hz)


def _frame_f0(notes: list[Note], n_frames: int, frame_ticks: np.ndarray, top: bool) -> np.ndarray:
    """MIDI pitch per frame (0 = silent); the top (or bottom) note of a chord wins."""
    midi = np.zeros(n_frames)
    for n in sorted(notes, key=lambda n: n.pitch, reverse=not top):
        lo, hi = np.searchsorted(frame_ticks, [n.start, n.end], side="left")
        midi[lo:hi] = n.pitch
    return midi


def _hz(midi: np.ndarray) -> np.ndarray:
    return np.where(midi > 0, 440.0 * 2.0 ** ((midi - 69.0) / 12.0), 0.0)


def _multif0(notes: list[Note], n_frames: int, frame_ticks: np.ndarray) -> list[list[float]]:
    active: list[set[int]] = [set() for _ in range(n_frames)]
    for n in notes:
        lo, hi = np.searchsorted(frame_ticks, [n.start, n.end], side="left")
        for k in range(lo, hi):
            active[k].add(n.pitch)
    return [[float(_hz(np.array([p]))[0]) for p in sorted(a)] for a in active]


def f0_annotations(
    parts: dict[str, list[Note]],
    n_samples: int,
    sr: int,
    hop: int,
    sec_per_tick: float,
    sung_f0: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], list[list[float]]]:
    """The f0 of each part and every sounding pitch, on frames ``k * hop / sr`` s.

    Args:
        parts: role -> notes (ticks, transposed MIDI pitch).
        n_samples: length of the audio in samples; there are ``n_samples // hop + 1`` frames.
        sr: sample rate in Hz.
        hop: frame hop in samples.
        sec_per_tick: s per MIDI tick at the piece's tempo.
        sung_f0: the formant singer's f0 in Hz, one value per `CONTROL_HOP` samples; it
            replaces the soprano's notes (vibrato and glides included). None for a GM voice.

    Returns:
        role -> f0 in Hz per frame, (T,) (0 where unvoiced), and per frame the sorted
        pitches in Hz of every sounding note (``multif0``).
    """
    n_frames = n_samples // hop + 1
    times = np.arange(n_frames) * hop / sr
    frame_ticks = times / sec_per_tick
    part_f0 = {
        role: _hz(_frame_f0(notes, n_frames, frame_ticks, top=role != "bass"))
        for role, notes in parts.items()
    }
    if sung_f0 is None:
        all_notes = [n for notes in parts.values() for n in notes]
        multif0 = _multif0(all_notes, n_frames, frame_ticks)
    else:  # the sung f0 (vibrato and glides included) replaces the soprano's notes
        ctl = np.minimum(np.round(times * sr / CONTROL_HOP).astype(int), len(sung_f0) - 1)
        part_f0["soprano"] = sung_f0[ctl]
        others = [n for role, notes in parts.items() if role != "soprano" for n in notes]
        multif0 = _multif0(others, n_frames, frame_ticks)
        for k in np.flatnonzero(part_f0["soprano"]):
            multif0[k] = sorted([*multif0[k], float(part_f0["soprano"][k])])
    return part_f0, multif0


def onset_annotations(drums: list[Note], sec_per_tick: float) -> dict[str, list[float]]:
    """Drum class -> sorted onset times in s (empty lists for a piece without drums)."""
    onsets: dict[str, list[float]] = {"kick": [], "snare": [], "hihat": []}
    for name in onsets:
        ticks = sorted({n.start for n in drums if DRUM_CLASSES[n.pitch] == name})
        onsets[name] = [t * sec_per_tick for t in ticks]
    return onsets


def beat_annotations(
    beats: list[Beat], sec_per_tick: float, duration: float
) -> tuple[list[float], list[float]]:
    """Beat and downbeat times in s before `duration` s (a pickup has no downbeat)."""
    beat_times = [b.tick * sec_per_tick for b in beats if b.tick * sec_per_tick < duration]
    downbeats = [
        b.tick * sec_per_tick
        for b in beats
        if b.bar >= 0 and b.position == 0 and b.tick * sec_per_tick < duration
    ]
    return beat_times, downbeats


def piece_tags(
    programs: dict[str, int], drums: list[Note], mode: str, tempo_class: str, ts: object
) -> list[str]:
    """The piece's tags in `EMBEDDED_TAGS` order: instrument families (of the GM
    `programs` and the drums), mode, tempo class and metre (of time signature `ts`)."""
    families = sorted({PROGRAMS[p][1] for p in programs.values()} | ({"drums"} if drums else set()))
    metre = "triple" if int(ts.beatCount) % 3 == 0 else "duple"  # type: ignore[attr-defined]
    return [t for t in EMBEDDED_TAGS if t in {*families, mode, tempo_class, metre}]


PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
"""Root names of the chord labels (sharps), pitch class 0..11."""


@lru_cache(maxsize=4096)
def chord_label(pitches: frozenset[int]) -> str:
    """The majmin label of a set of sounding MIDI pitches: music21's root and triad quality
    (``major`` -> ``<root>:maj``, ``minor`` -> ``<root>:min``), ``N`` for no pitch, ``X``
    for any other quality."""
    if not pitches:
        return "N"
    from music21 import chord

    c = chord.Chord(sorted(pitches))
    suffix = {"major": "maj", "minor": "min"}.get(c.quality)
    if suffix is None:
        return "X"
    return f"{PITCH_CLASSES[c.root().pitchClass]}:{suffix}"


def chord_annotations(
    parts: dict[str, list[Note]], sec_per_tick: float, duration: float
) -> list[list[float | str]]:
    """``[start s, end s, label]`` rows of the chords of `parts` (see the module docstring),
    merged where a label repeats, covering ``[0, duration]`` s."""
    notes = [n for ns in parts.values() for n in ns if n.end > n.start]
    end_tick = duration / sec_per_tick
    cuts = sorted({0, *(t for n in notes for t in (n.start, n.end) if t < end_tick)})
    rows: list[list[float | str]] = []
    for k, a in enumerate(cuts):
        b = cuts[k + 1] if k + 1 < len(cuts) else None
        sounding = frozenset(n.pitch for n in notes if n.start <= a and n.end > a)
        label = chord_label(sounding)
        start = a * sec_per_tick
        stop = duration if b is None else b * sec_per_tick
        if rows and rows[-1][2] == label:
            rows[-1][1] = stop
        elif stop > start:
            rows.append([start, stop, label])
    return rows
