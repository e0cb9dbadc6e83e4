"""The embedded default dataset: music21 corpus scores rendered through a General-MIDI SoundFont.

A fresh machine can train every task with no download: pieces from music21's bundled corpus
(Bach chorales first, with some Palestrina, Trecento and string-quartet movements) are given a
seeded tempo, transposition, instrumentation and drum part, rendered one part at a time with
`midirenderer` and the ``TimGM6mb.sf2`` SoundFont that ships inside `pretty_midi`, and cached
on disk. Everything is a function of (corpus path, seed, sr, hop, max_duration).

Conventions:
    * Parts are read top to bottom in score order and named by role: ``soprano`` (the top
      part, the melody), ``alto``, ``tenor`` (middle parts; a 3-part piece has no tenor) and
      ``bass`` (the lowest part). Pieces have 2 to 4 parts.
    * Stems: ``soprano``, ``alto``, ``tenor``, ``bass``, ``drums`` (silent where the piece has
      no such part), ``vocals`` (= ``soprano``, on a GM voice patch, or sung by the formant
      synthesiser of `mir.data.singing` with ``voice="formant"``) and
      ``accompaniment`` (= alto + tenor + bass + drums). The mix is exactly
      ``vocals + accompaniment``, float32, peak normalised to 0.9 with one gain for all stems.
    * f0: ``melody`` and ``vocal`` are the soprano's f0, ``bass`` the bass part's, on frames
      ``k * hop / sr`` s, in Hz (equal temperament, A4 = 440 Hz, transposition included),
      0 Hz where unvoiced. Within a part holding a chord, melody takes its top note and bass
      its bottom note. ``multif0`` lists every sounding pitched note per frame. With
      ``voice="formant"`` the soprano's f0 (in ``melody``, ``vocal`` and ``multif0``) is the
      pitch actually sung: vibrato and glides included.
    * Drum onsets: ``kick`` (GM 36), ``snare`` (38, ghost notes included) and ``hihat``
      (closed 42 and open 46), in s. About 20% of pieces have no drums: their onset arrays are
      empty, which is a real "no drums" label.
    * Beats and downbeats follow the score's (single) time signature and its measures, so a
      pickup bar has beats but no downbeat; tempo is in beats per minute of the metre's beat
      unit (a dotted quarter in 6/8).
    * Tags come from `EMBEDDED_TAGS`: instrument families present, mode (music21's key
      analysis), tempo class and metre.
    * The ten Bach10 chorales, and the other settings of the same chorale tunes found in the
      corpus, are never used (`BACH10_TITLES`, `BACH10_BWV`, `BACH10_OTHER_SETTINGS`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import random
import re
import shutil
import time
import unicodedata
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mir.audio import atomic_write, load_audio, resample, write_wav
from mir.data.base import SPLITS, Dataset, check_split
from mir.data.singing import CONTROL_HOP, sing
from mir.data.track import Track
from mir.errors import AudioError, DatasetError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bumped whenever rendering changes, so that old caches are never trusted."""

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

TEMPO_CLASSES: dict[str, tuple[float, float]] = {
    "slow": (60.0, 85.0),
    "medium": (85.0, 115.0),
    "fast": (115.0, 160.0),
}
"""Tempo class -> [low, high) in beats per minute; each piece draws its class in turn."""

BACH10_TITLES: tuple[str, ...] = (
    "Ach Gott und Herr",
    "Ach lieben Christen",
    "Christe, der du bist Tag und Licht",
    "Christe, du Beistand",
    "Die Nacht ist kommen",
    "Die Sonne hat sich mit ihrem Glanz",
    "Die Sonn' hat sich mit ihrem Glanz",
    "Herr Gott, dich loben alle wir",
    "Vor deinen Thron tret ich",
    "Für deinen Thron tret ich",
    "Jesus Christus, unser Heiland",
    "Nun bitten wir den heiligen Geist",
)
"""Titles (and first lines) of the Bach10 chorales, with the spellings music21 uses."""

BACH10_BWV: tuple[int, ...] = (255, 256, 274, 275, 296, 297, 326, 327, 363, 364, 385)
"""BWV numbers of the Bach10 settings (both settings of "Jesus Christus, unser Heiland")."""

BACH10_OTHER_SETTINGS: tuple[str, ...] = (
    "bach/bwv48.3",  # Ach Gott und Herr
    "bach/bwv114.7",  # Ach lieben Christen, seid getrost
    "bach/bwv62.6",  # underlaid "Christe, der du bist Tag und Licht", same tune as BWV 274
    "bach/bwv169.7",  # Nun bitten wir den heiligen Geist
    "bach/bwv197.5",  # Nun bitten wir den heiligen Geist
)
"""Cantata movements setting the same tunes and texts, found once by scanning the first
lyrics and the first 12 melody notes of every Bach score in the corpus; excluded too so
that no Bach10 melody is seen in training."""

SOURCES: dict[str, tuple[tuple[str, ...], int]] = {
    "chorales": (("bach",), 6),
    "palestrina": (("palestrina",), 1),
    "trecento": (("trecento",), 1),
    "quartets": (("haydn", "mozart", "beethoven"), 1),
}
"""Source group -> (corpus folders, pieces taken per round of the interleaved order)."""

MIN_PARTS, MAX_PARTS = 2, 4
ROLES = ("soprano", "alto", "tenor", "bass")
STEMS = (*ROLES, "drums")
RENDER_SR = 48000  # midirenderer always renders 48 kHz stereo 16-bit
TPQ = 480  # MIDI ticks per quarter note
TAIL_S = 1.0  # release time kept after the last note (s)
FADE_S = 0.02  # fade-out at a crop (s)
PEAK = 0.9
DRUM_PROB = 0.8
TRANSPOSE_RANGE = (-5, 6)
PITCH_RANGE = (36, 84)  # transposition keeps every part inside C2..C6 where possible
MARKER = "DONE"
SKIPPED = "SKIPPED"

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
# Piece selection


def normalise_title(text: str) -> str:
    """Lower case, umlauts spelled out, accents, punctuation and spaces removed."""
    text = text.lower()
    for umlaut, spelled in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        text = text.replace(umlaut, spelled)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if c.isalnum() and c.isascii())


_EXCLUDED_KEYS = tuple(normalise_title(t) for t in BACH10_TITLES)


def bwv_number(corpus_path: str) -> int | None:
    """BWV number of a Bach corpus file (``bach/bwv10.7.mxl`` -> 10), else None."""
    m = re.match(r"bach/bwv(\d+)", corpus_path)
    return int(m.group(1)) if m else None


def is_excluded(corpus_path: str, titles: list[str]) -> bool:
    """True for a Bach10 chorale, by BWV number, known other setting, or any title given."""
    stem = corpus_path.rsplit(".", 1)[0]
    if stem in BACH10_OTHER_SETTINGS:
        return True
    bwv = bwv_number(corpus_path)
    if bwv in BACH10_BWV and "." not in stem.split("/")[-1]:
        return True
    for title in titles:
        key = normalise_title(title)
        if key and any(k in key or (len(key) >= 12 and key in k) for k in _EXCLUDED_KEYS):
            return True
    return False


@lru_cache(maxsize=1)
def _chorale_titles() -> dict[int, str]:
    from music21.corpus.chorales import ChoraleList

    return {int(bwv): entry["title"] for bwv, entry in ChoraleList().byBWV.items()}


def piece_titles(corpus_path: str, md: object | None = None) -> list[str]:
    """Every title music21 knows for a corpus file (metadata, Bach chorale list)."""
    titles = []
    for attr in ("title", "movementName", "alternativeTitle", "popularTitle"):
        value = getattr(md, attr, None) if md is not None else None
        if isinstance(value, str) and value:
            titles.append(value)
    bwv = bwv_number(corpus_path)
    stem = corpus_path.rsplit(".", 1)[0]
    if bwv is not None and "." not in stem.split("/")[-1] and bwv in _chorale_titles():
        titles.append(_chorale_titles()[bwv])
    return titles


@dataclass(frozen=True)
class Candidate:
    """One corpus file that may be rendered."""

    corpus_path: str
    title: str
    titles: tuple[str, ...]


_FORMAT_RANK = {"mxl": 0, "xml": 1, "musicxml": 2, "krn": 3, "mid": 4, "abc": 5}


@lru_cache(maxsize=1)
def all_candidates() -> tuple[Candidate, ...]:
    """Eligible corpus files (2-4 parts, one time signature, not Bach10), sorted by path."""
    from music21 import corpus

    bundle = corpus.corpora.CoreCorpus().metadataBundle
    folders = {f for group, _ in SOURCES.values() for f in group}
    best: dict[str, tuple[int, Candidate]] = {}
    # iterating a MetadataBundle indexes a fresh list per item (quadratic): read its dict
    entries = getattr(bundle, "_metadataEntries", None)
    for entry in entries.values() if isinstance(entries, dict) else bundle:
        md = entry.metadata
        path = str(entry.sourcePath)
        if md is None or entry.number is not None or path.split("/")[0] not in folders:
            continue
        n_parts = md.numberOfParts
        if n_parts is None or not MIN_PARTS <= n_parts <= MAX_PARTS:
            continue
        if len(md.timeSignatures or []) != 1:
            continue
        titles = piece_titles(path, md)
        if is_excluded(path, titles):
            continue
        stem, ext = path.rsplit(".", 1)
        rank = _FORMAT_RANK.get(ext.lower(), 9)
        title = next((t for t in titles if not t.endswith(f".{ext}")), stem.split("/")[-1])
        cand = Candidate(path, title, tuple(titles))
        if stem not in best or rank < best[stem][0]:
            best[stem] = (rank, cand)
    return tuple(c for _, c in sorted(best.values(), key=lambda rc: rc[1].corpus_path))


def piece_order(seed: int) -> list[Candidate]:
    """All eligible pieces in a seeded, deterministic order: each source group shuffled,
    then interleaved by the weights in `SOURCES` (mostly chorales)."""
    queues: dict[str, list[Candidate]] = {}
    for name, (folders, _) in SOURCES.items():
        group = [c for c in all_candidates() if c.corpus_path.split("/")[0] in folders]
        random.Random(f"{seed}:{name}").shuffle(group)
        queues[name] = group
    order: list[Candidate] = []
    while any(queues.values()):
        for name, (_, weight) in SOURCES.items():
            for _ in range(weight):
                if queues[name]:
                    order.append(queues[name].pop(0))
    return order


def track_id_of(corpus_path: str) -> str:
    """``bach/bwv10.7.mxl`` -> ``bach-bwv10.7``."""
    return corpus_path.rsplit(".", 1)[0].replace("/", "-")


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2.0**64


def assign_splits(
    corpus_paths: list[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, str]:
    """Split by a hash of the corpus path (stable as pieces are added); with 3 or more
    pieces, an empty split takes the piece whose hash lies nearest to its interval."""
    u = {p: _unit_hash(p) for p in corpus_paths}
    edges = np.cumsum(fractions)[:-1]
    split = {p: SPLITS[int(np.searchsorted(edges, u[p], side="right"))] for p in corpus_paths}
    if len(corpus_paths) >= 3:
        lows = {"train": 0.0, "validation": float(edges[0]), "test": float(edges[1])}
        highs = {"train": float(edges[0]), "validation": float(edges[1]), "test": 1.0}
        for name in ("test", "validation", "train"):
            if name in split.values():
                continue
            counts = {s: list(split.values()).count(s) for s in SPLITS}
            donors = [p for p in corpus_paths if counts[split[p]] > 1]
            best = min(donors, key=lambda p: max(lows[name] - u[p], u[p] - highs[name]))
            split[best] = name
    return split


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


def _time_signature(score: object) -> object:
    from music21 import meter

    parts = list(score.parts)  # type: ignore[attr-defined]
    ts = parts[0].recurse().getElementsByClass(meter.TimeSignature).first() if parts else None
    return ts or meter.TimeSignature("4/4")


def _part_notes(part: object, limit_tick: int) -> list[tuple[int, int, int]]:
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


def _beat_grid(score: object, ts: object, end_tick: int) -> list[Beat]:
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


def _drum_part(
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


# ---------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=1)
def soundfont_bytes() -> bytes:
    """``TimGM6mb.sf2`` from the installed pretty_midi package (read without importing it)."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        raise DatasetError("embedded dataset: pretty_midi (which ships TimGM6mb.sf2) is missing")
    path = Path(spec.origin).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise DatasetError(f"embedded dataset: SoundFont {path} not found")
    return path.read_bytes()


def _midi_bytes(
    notes: list[Note], program: int, tempo_us: int, end_tick: int, drums: bool
) -> bytes:
    import mido

    channel = 9 if drums else 0
    mid = mido.MidiFile(ticks_per_beat=TPQ)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=tempo_us, time=0))
    track.append(mido.Message("program_change", program=program, channel=channel, time=0))
    # note-offs sort before note-ons at the same tick so repeated pitches re-strike
    msgs = [(n.end, 0, n.pitch, 0) for n in notes] + [
        (n.start, 1, n.pitch, n.velocity) for n in notes
    ]
    now = 0
    for tick, is_on, pitch, vel in sorted(msgs):
        kind = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=vel, channel=channel, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(end_tick - now, 0)))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def _render(midi: bytes, n_out: int, sr: int) -> np.ndarray:
    """Render MIDI bytes to mono float32 at `sr`, padded or cut to `n_out` samples."""
    import midirenderer
    import soundfile as sf

    wav = midirenderer.render_wave_from(soundfont_bytes(), midi)
    try:
        x, file_sr = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    except Exception:  # an empty MIDI file renders to a header with no frames
        x, file_sr = np.zeros((0, 1), np.float32), RENDER_SR
    y = resample(x.mean(axis=1), int(file_sr), sr) if len(x) else np.zeros(0, np.float32)
    out = np.zeros(n_out, np.float32)
    out[: min(n_out, len(y))] = y[:n_out]
    return out


@dataclass
class RenderedPiece:
    """Everything written for one piece."""

    stems: dict[str, np.ndarray]  # STEMS -> (N,) float32
    annotations: dict


def _frame_f0(notes: list[Note], n_frames: int, frame_ticks: np.ndarray, top: bool) -> np.ndarray:
    """MIDI pitch per frame (0 = silent); the top (or bottom) note of a chord wins."""
    midi = np.zeros(n_frames)
    for n in sorted(notes, key=lambda n: n.pitch, reverse=not top):
        lo, hi = np.searchsorted(frame_ticks, [n.start, n.end], side="left")
        midi[lo:hi] = n.pitch
    return midi


def _hz(midi: np.ndarray) -> np.ndarray:
    return np.where(midi > 0, 440.0 * 2.0 ** ((midi - 69.0) / 12.0), 0.0)


def has_drum_part(corpus_path: str, seed: int) -> bool:
    """Whether a piece gets drums (probability `DRUM_PROB`), drawn on its own stream."""
    return _unit_hash(f"drums:{seed}:{corpus_path}") < DRUM_PROB


def render_piece(
    cand: Candidate,
    rank: int,
    seed: int,
    sr: int,
    hop: int,
    max_duration: float,
    voice: str = "gm",
) -> RenderedPiece:
    """Render one corpus piece: every random choice comes from (seed, corpus path), and the
    tempo class from the piece's rank in the seeded order (so classes are balanced).
    `voice`: ``gm`` sings the soprano on a GM voice patch, ``formant`` with
    `mir.data.singing.sing` (vibrato, glides, vowels, consonants), at the GM line's level;
    the other parts, drums and every other choice are the same for both.

    Raises:
        DatasetError: the score has fewer than two parts with notes.
    """
    from music21 import corpus

    digest = hashlib.sha256(f"{seed}:{cand.corpus_path}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    score = corpus.parse(cand.corpus_path)
    ts = _time_signature(score)

    # tempo (beats per minute of the metre's beat unit), quantised to the MIDI tempo
    tempo_class = list(TEMPO_CLASSES)[(rank + seed) % len(TEMPO_CLASSES)]
    lo, hi = TEMPO_CLASSES[tempo_class]
    beat_ql = float(ts.beatDuration.quarterLength)
    tempo_us = round(60e6 / rng.uniform(lo, hi) / beat_ql)
    sec_per_tick = tempo_us / 1e6 / TPQ
    bpm = 60.0 / (tempo_us / 1e6 * beat_ql)

    limit_tick = int(np.ceil(float(max_duration) / sec_per_tick))
    raw_parts = [n for n in (_part_notes(p, limit_tick) for p in score.parts) if n]
    if not MIN_PARTS <= len(raw_parts) <= MAX_PARTS:
        raise DatasetError(f"{cand.corpus_path}: {len(raw_parts)} parts with notes")
    mode = estimate_mode([n for part in raw_parts for n in part])

    # transposition kept inside PITCH_RANGE where the piece allows
    lowest = min(p for part in raw_parts for _, _, p in part)
    highest = max(p for part in raw_parts for _, _, p in part)
    shift = int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1))
    up, down = PITCH_RANGE[0] - lowest, PITCH_RANGE[1] - highest  # shift >= up, shift <= down
    shift = int(np.clip(shift, min(up, down), max(up, down)))  # too wide: stay between the two

    # crop
    last_end = max(e for part in raw_parts for _, e, _ in part)
    duration = min(float(max_duration), last_end * sec_per_tick + TAIL_S)
    n_samples = round(duration * sr)
    crop_tick = min(limit_tick, last_end)
    end_tick = int(np.ceil(duration / sec_per_tick)) + TPQ // 8

    roles = {2: ("soprano", "bass"), 3: ("soprano", "alto", "bass"), 4: ROLES}[len(raw_parts)]
    parts: dict[str, list[Note]] = {}
    programs: dict[str, int] = {}
    for role, raw in zip(roles, raw_parts, strict=True):
        base = int(rng.integers(95, 112)) if role == "soprano" else int(rng.integers(70, 100))
        notes = [
            Note(s, min(e, crop_tick), p + shift, int(np.clip(base + rng.integers(-6, 7), 1, 127)))
            for s, e, p in raw
            if s < crop_tick
        ]
        parts[role] = notes
        if role == "soprano":
            programs[role] = int(rng.choice(VOICE_PROGRAMS))
        else:
            lo_p = min((n.pitch for n in notes), default=60)
            hi_p = max((n.pitch for n in notes), default=60)
            fits = [
                g for g in ROLE_PROGRAMS[role] if PROGRAMS[g][2] <= lo_p and hi_p <= PROGRAMS[g][3]
            ]
            programs[role] = int(rng.choice(fits or ROLE_PROGRAMS[role]))

    beats = _beat_grid(score, ts, crop_tick)
    has_drums = has_drum_part(cand.corpus_path, seed)
    drums = _drum_part(beats, ts, round(beat_ql * TPQ), crop_tick, bpm, rng) if has_drums else []

    # render each part alone so that the mix is exactly the sum of the stems
    stems = {name: np.zeros(n_samples, np.float32) for name in STEMS}
    for role, notes in parts.items():
        midi = _midi_bytes(notes, programs[role], tempo_us, end_tick, drums=False)
        stems[role] = _render(midi, n_samples, sr)
    if drums:
        stems["drums"] = _render(_midi_bytes(drums, 0, tempo_us, end_tick, True), n_samples, sr)
    sung_f0 = None
    if voice == "formant":  # on its own random stream: the rest of the piece is unchanged
        vdigest = hashlib.sha256(f"voice:{seed}:{cand.corpus_path}".encode()).digest()
        vrng = np.random.default_rng(int.from_bytes(vdigest[:8], "big"))
        sop = [
            (n.start * sec_per_tick, n.end * sec_per_tick, n.pitch, n.velocity)
            for n in parts["soprano"]
        ]
        sung, sung_f0 = sing(sop, n_samples, sr, vrng)
        ref = float(np.sqrt(np.mean(stems["soprano"] ** 2)))  # the GM line's level
        stems["soprano"] = sung * np.float32(ref / max(float(np.sqrt(np.mean(sung**2))), 1e-9))
    elif voice != "gm":
        raise DatasetError(f"embedded dataset: voice must be 'gm' or 'formant', got {voice!r}")
    if last_end * sec_per_tick > max_duration:  # cropped mid-note: fade out
        fade = min(round(FADE_S * sr), n_samples)
        ramp = np.linspace(1.0, 0.0, fade, dtype=np.float32)
        for x in stems.values():
            x[n_samples - fade :] *= ramp
    peak = float(np.max(np.abs(_mix(stems)))) if n_samples else 0.0
    gain = PEAK / peak if peak > 0 else 1.0
    stems = {k: (v * np.float32(gain)).astype(np.float32) for k, v in stems.items()}

    # annotations on the frame grid
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
    onsets: dict[str, list[float]] = {"kick": [], "snare": [], "hihat": []}
    for name in onsets:
        ticks = sorted({n.start for n in drums if DRUM_CLASSES[n.pitch] == name})
        onsets[name] = [t * sec_per_tick for t in ticks]
    beat_times = [b.tick * sec_per_tick for b in beats if b.tick * sec_per_tick < duration]
    downbeats = [
        b.tick * sec_per_tick
        for b in beats
        if b.bar >= 0 and b.position == 0 and b.tick * sec_per_tick < duration
    ]
    families = sorted({PROGRAMS[p][1] for p in programs.values()} | ({"drums"} if drums else set()))
    metre = "triple" if int(ts.beatCount) % 3 == 0 else "duple"
    tags = [t for t in EMBEDDED_TAGS if t in {*families, mode, tempo_class, metre}]
    bwv = (
        cand.corpus_path.rsplit(".", 1)[0].split("/bwv")[-1]
        if bwv_number(cand.corpus_path)
        else None
    )
    annotations = {
        "format": FORMAT_VERSION,
        "hop": hop,
        "sr": sr,
        "n_samples": n_samples,
        "f0": {role: f.tolist() for role, f in part_f0.items()},
        "multif0": multif0,
        "onsets": onsets,
        "beats": beat_times,
        "downbeats": downbeats,
        "tags": tags,
        "meta": {
            "corpus_path": cand.corpus_path,
            "title": cand.title,
            "bwv": bwv,
            "transposition": shift,
            "tempo": bpm,
            "tempo_class": tempo_class,
            "time_signature": str(ts.ratioString),
            "mode": mode,
            "programs": {r: PROGRAMS[p][0] for r, p in programs.items()}
            | ({"soprano": "formant singer"} if voice == "formant" else {}),
            "voice": voice,
            "gm_programs": programs,
            "drums": bool(drums),
            "gain": gain,
            "seed": seed,
            "rank": rank,
        },
    }
    return RenderedPiece(stems, annotations)


def _mix(stems: dict[str, np.ndarray]) -> np.ndarray:
    """vocals + accompaniment, in the one summation order used everywhere."""
    return stems["soprano"] + _accompaniment(stems)


def _accompaniment(stems: dict[str, np.ndarray]) -> np.ndarray:
    return ((stems["alto"] + stems["tenor"]) + stems["bass"]) + stems["drums"]


def _multif0(notes: list[Note], n_frames: int, frame_ticks: np.ndarray) -> list[list[float]]:
    active: list[set[int]] = [set() for _ in range(n_frames)]
    for n in notes:
        lo, hi = np.searchsorted(frame_ticks, [n.start, n.end], side="left")
        for k in range(lo, hi):
            active[k].add(n.pitch)
    return [[float(_hz(np.array([p]))[0]) for p in sorted(a)] for a in active]


# ---------------------------------------------------------------------------------------------
# Cache


def default_root() -> Path:
    """``$MIR_CACHE/embedded``, else ``~/.cache/mir/embedded``."""
    cache = os.environ.get("MIR_CACHE")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache" / "mir"
    return base / "embedded"


def write_piece(folder: Path, piece: RenderedPiece, sr: int) -> None:
    """Write a piece into a private temporary folder, each file atomically and the marker
    last, then rename the folder into place: a crash or a second process rendering the
    same piece never leaves a half piece behind a marker."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        stored = []
        sums: dict[str, int] = {}
        for name, x in piece.stems.items():
            if np.any(x):  # silent stems are not stored
                write_wav(tmp / "stems" / f"{name}.wav", x, sr)
                stored.append(name)
                sums[f"stems/{name}.wav"] = _checksum(x)
        mix = _mix(piece.stems)
        write_wav(tmp / "mix.wav", mix, sr)
        sums["mix.wav"] = _checksum(mix)
        text = json.dumps(dict(piece.annotations, stems=stored))
        atomic_write(tmp / "annotations.json", lambda t: Path(t).write_text(text))
        sums["annotations.json"] = zlib.crc32(text.encode())
        marker = json.dumps(
            {
                "format": FORMAT_VERSION,
                "n_samples": piece.annotations["n_samples"],
                "sr": sr,
                "crc32": sums,
            }
        )
        atomic_write(tmp / MARKER, lambda t: Path(t).write_text(marker))
        _publish(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _checksum(x: np.ndarray) -> int:
    """CRC-32 of float32 samples as stored (32-bit float wav reads back bit-exact; the
    mono downmix of reading turns -0.0 into 0.0, so zeros are counted unsigned)."""
    return zlib.crc32((np.ascontiguousarray(x, dtype=np.float32) + np.float32(0)).tobytes())


class CorruptPiece(DatasetError):
    """A rendered piece on disk differs from what its DONE marker records."""


def _marker(folder: Path) -> dict[str, Any] | None:
    """The DONE marker of a complete piece of this format (with lengths, rate and
    checksums), else None: a piece without one (or of an older marker) is rendered again."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        if (
            marker["format"] == FORMAT_VERSION
            and isinstance(marker["crc32"], dict)
            and int(marker["n_samples"]) >= 0
            and int(marker["sr"]) > 0
        ):
            return marker
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def rendered_samples(folder: Path) -> int | None:
    """Length in samples of a completely rendered piece in `folder`, else None."""
    marker = _marker(folder)
    return None if marker is None else int(marker["n_samples"])


def _publish(tmp: Path, folder: Path) -> None:
    if rendered_samples(folder) is not None:  # another process finished the piece first
        return
    if folder.exists():  # an untrusted leftover (no marker): move it aside, then delete it
        stale = folder.with_name(f".{folder.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
        with contextlib.suppress(OSError):
            os.rename(folder, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(tmp, folder)
    except OSError:
        if rendered_samples(folder) is None:  # not a lost race with an identical render
            raise


def read_piece(folder: Path, track_id: str, sr: int, split: str) -> Track:
    """Load a rendered piece as a `Track` (silent stems are not stored on disk).

    Every file is checked against the DONE marker before use: the sample rate, the length
    in samples and a CRC-32 of the samples (of the text for ``annotations.json``).

    Raises:
        CorruptPiece: a file is missing, cut short, resampled or altered since the render.
    """
    marker = _marker(folder)
    if marker is None:
        raise CorruptPiece(f"embedded piece {track_id}: {folder / MARKER} is missing or invalid")
    if int(marker["sr"]) != sr:
        raise CorruptPiece(
            f"embedded piece {track_id}: rendered at {marker['sr']} Hz, read at {sr} Hz"
        )
    sums = marker["crc32"]
    n = int(marker["n_samples"])
    try:
        text = (folder / "annotations.json").read_bytes()
        if zlib.crc32(text) != sums.get("annotations.json"):
            raise CorruptPiece(
                f"embedded piece {track_id}: {folder / 'annotations.json'} differs from the "
                "render (checksum)"
            )
        ann = json.loads(text)
    except (OSError, ValueError) as exc:
        raise CorruptPiece(f"{folder}: cannot read annotations ({exc})") from None
    if int(ann["n_samples"]) != n:
        raise CorruptPiece(
            f"embedded piece {track_id}: annotations say {ann['n_samples']} samples, the render {n}"
        )

    def audio_file(rel: str) -> np.ndarray:
        path = folder / rel
        try:
            x = load_audio(path, sr, expect_sr=sr, strict=True)
        except AudioError as exc:
            raise CorruptPiece(f"embedded piece {track_id}: {exc}") from None
        if len(x) != n:
            raise CorruptPiece(
                f"embedded piece {track_id}: {path} has {len(x)} samples, the render had {n}"
            )
        if _checksum(x) != sums.get(rel):
            raise CorruptPiece(
                f"embedded piece {track_id}: {path} differs from the render (checksum)"
            )
        return x

    audio = audio_file("mix.wav")
    stored = set(ann["stems"])
    stems = {
        name: audio_file(f"stems/{name}.wav") if name in stored else np.zeros(n, np.float32)
        for name in STEMS
    }
    stems["vocals"] = stems["soprano"]
    stems["accompaniment"] = _accompaniment(stems)
    hop = int(ann["hop"])
    n_frames = len(next(iter(ann["f0"].values())))
    times = np.arange(n_frames) * hop / sr
    f0 = {r: np.asarray(v, dtype=np.float64) for r, v in ann["f0"].items()}
    melody = f0["soprano"]
    meta = dict(ann["meta"], split=split)
    return Track(
        name=track_id,
        audio=audio,
        sr=sr,
        stems=stems,
        f0={
            "melody": (times, melody),
            "vocal": (times, melody.copy()),
            "bass": (times, f0["bass"]),
        },
        multif0=(times, [np.asarray(f, dtype=np.float64) for f in ann["multif0"]]),
        onsets={k: np.asarray(v, dtype=np.float64) for k, v in ann["onsets"].items()},
        beats=np.asarray(ann["beats"], dtype=np.float64),
        downbeats=np.asarray(ann["downbeats"], dtype=np.float64),
        tags=list(ann["tags"]),
        meta=meta,
    )


def piece_signals(folder: Path, stored: set[str]) -> dict[str, list[tuple[Path, float]]]:
    """The files of a rendered piece as `Dataset.signals` recipes (as `read_piece` sums
    them; a stem not stored on disk is silent)."""

    def files(*names: str) -> list[tuple[Path, float]]:
        return [(folder / "stems" / f"{n}.wav", 1.0) for n in names if n in stored]

    out = {"mixture": [(folder / "mix.wav", 1.0)]}
    out.update({name: files(name) for name in STEMS})
    out["vocals"] = files("soprano")
    out["accompaniment"] = files("alto", "tenor", "bass", "drums")
    return out


def piece_annotations(folder: Path, track_id: str, sr: int, split: str) -> tuple[Track, set[str]]:
    """A rendered piece's annotations as a `Track` without audio, and its stored stems."""
    try:
        ann = json.loads((folder / "annotations.json").read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{folder}: cannot read annotations ({exc})") from None
    hop = int(ann["hop"])
    n_frames = len(next(iter(ann["f0"].values())))
    times = np.arange(n_frames) * hop / sr
    f0 = {r: np.asarray(v, dtype=np.float64) for r, v in ann["f0"].items()}
    melody = f0["soprano"]
    track = Track(
        name=track_id,
        audio=np.zeros(0, np.float32),
        sr=sr,
        f0={
            "melody": (times, melody),
            "vocal": (times, melody.copy()),
            "bass": (times, f0["bass"]),
        },
        multif0=(times, [np.asarray(f, dtype=np.float64) for f in ann["multif0"]]),
        onsets={k: np.asarray(v, dtype=np.float64) for k, v in ann["onsets"].items()},
        beats=np.asarray(ann["beats"], dtype=np.float64),
        downbeats=np.asarray(ann["downbeats"], dtype=np.float64),
        tags=list(ann["tags"]),
        meta=dict(ann["meta"], split=split),
    )
    return track, set(ann["stems"])


@dataclass
class PieceReport:
    """What `EmbeddedDataset.prepare` did for one piece."""

    track_id: str
    duration: float  # s of audio
    wall: float  # s spent rendering (0 when cached)
    rendered: bool


class EmbeddedDataset(Dataset):
    """Pieces of music21's corpus rendered with a GM SoundFont, cached on disk.

    The first call to `track_ids` or `load` renders whatever of the first `n_pieces`
    eligible pieces is missing (about a second per piece), with a log line per piece.

    Args:
        sr: sample rate in Hz.
        root: cache folder; default ``$MIR_CACHE/embedded`` or ``~/.cache/mir/embedded``.
        n_pieces: how many pieces, taken in the seeded order of `piece_order`.
        max_duration: each piece is cropped to at most this many seconds.
        seed: drives piece order, tempo, transposition, instruments and drums.
        hop: frame hop in samples of the f0 annotations.
        voice: how the vocal line is sung: ``gm`` (a GM voice patch) or ``formant``
            (`mir.data.singing`: vibrato, glides, vowels and consonants, with the sung f0
            as the annotation); each has its own cache folder.
    """

    def __init__(
        self,
        sr: int = 22050,
        root: str | None = None,
        n_pieces: int = 40,
        max_duration: float = 30.0,
        seed: int = 0,
        hop: int = 256,
        voice: str = "gm",
    ) -> None:
        super().__init__(sr)
        if voice not in ("gm", "formant"):
            raise DatasetError(f"embedded dataset: voice must be 'gm' or 'formant', got {voice!r}")
        self.voice = voice
        if n_pieces < 1:
            raise DatasetError(f"embedded dataset: n_pieces must be >= 1, got {n_pieces}")
        if max_duration <= 0 or hop < 1:
            raise DatasetError("embedded dataset: max_duration and hop must be positive")
        self.n_pieces = int(n_pieces)
        self.max_duration = float(max_duration)
        self.seed = int(seed)
        self.hop = int(hop)
        base = Path(root).expanduser() if root not in (None, "") else default_root()
        self.cache_dir = base / (
            f"v{FORMAT_VERSION}-sr{self.sr}-hop{self.hop}-dur{self.max_duration:g}-seed{self.seed}"
            + ("" if voice == "gm" else f"-voice{voice}")
        )
        self._splits: dict[str, str] | None = None  # track id -> split

    def __repr__(self) -> str:
        return (
            f"EmbeddedDataset(sr={self.sr}, n_pieces={self.n_pieces}, "
            f"max_duration={self.max_duration:g}, seed={self.seed}, voice={self.voice}, "
            f"cache={self.cache_dir})"
        )

    def _order(self) -> list[Candidate]:
        """The seeded piece order, remembered in the cache so later runs skip music21."""
        import music21

        path = self.cache_dir / "order.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            saved = json.loads(path.read_text())
            if saved["music21"] == music21.__version__:
                return [Candidate(c[0], c[1], tuple(c[2])) for c in saved["pieces"]]
        order = piece_order(self.seed)
        text = json.dumps(
            {
                "music21": music21.__version__,
                "pieces": [[c.corpus_path, c.title, list(c.titles)] for c in order],
            }
        )
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        return order

    def prepare(self) -> list[PieceReport]:
        """Render the missing pieces among the first `n_pieces` (skipping scores that
        cannot be rendered), and fix the splits."""
        reports: list[PieceReport] = []
        chosen: list[Candidate] = []
        for rank, cand in enumerate(self._order()):
            if len(chosen) == self.n_pieces:
                break
            tid = track_id_of(cand.corpus_path)
            folder = self.cache_dir / tid
            if (folder / SKIPPED).exists():
                continue
            n = rendered_samples(folder)
            if n is not None:
                reports.append(PieceReport(tid, n / self.sr, 0.0, False))
                chosen.append(cand)
                continue
            t0 = time.perf_counter()
            try:
                piece = render_piece(
                    cand, rank, self.seed, self.sr, self.hop, self.max_duration, self.voice
                )
            except Exception as exc:  # a score music21 or the renderer cannot handle
                log.warning("embedded: skipping %s (%s)", cand.corpus_path, exc)
                atomic_write(folder / SKIPPED, lambda tmp, e=exc: Path(tmp).write_text(str(e)))
                continue
            write_piece(folder, piece, self.sr)
            wall = time.perf_counter() - t0
            dur = piece.annotations["n_samples"] / self.sr
            log.info(
                "embedded: rendered %d/%d %s (%.1f s audio in %.1f s, %.0fx real time)",
                len(chosen) + 1,
                self.n_pieces,
                tid,
                dur,
                wall,
                dur / max(wall, 1e-9),
            )
            reports.append(PieceReport(tid, dur, wall, True))
            chosen.append(cand)
        if len(chosen) < self.n_pieces:
            raise DatasetError(
                f"embedded dataset: only {len(chosen)} renderable pieces, asked for {self.n_pieces}"
            )
        by_path = assign_splits([c.corpus_path for c in chosen])
        self._splits = {track_id_of(p): s for p, s in by_path.items()}
        return reports

    def _ensure(self) -> dict[str, str]:
        if self._splits is None:
            self.prepare()
        assert self._splits is not None
        return self._splits

    def track_ids(self, split: str) -> list[str]:
        check_split(split)
        return sorted(t for t, s in self._ensure().items() if s == split)

    def load(self, track_id: str) -> Track:
        folder, split = self._folder(track_id)
        try:
            return read_piece(folder, track_id, self.sr, split)
        except CorruptPiece as exc:  # render it again, once; a second failure is raised
            log.warning("%s; rendering it again", exc)
            (folder / MARKER).unlink(missing_ok=True)
            self._splits = None
            splits = self._ensure()
            return read_piece(folder, track_id, self.sr, splits[track_id])

    def _folder(self, track_id: str) -> tuple[Path, str]:
        splits = self._ensure()
        if track_id not in splits:
            raise DatasetError(f"embedded dataset: unknown track {track_id!r}")
        folder = self.cache_dir / track_id
        if rendered_samples(folder) is None:  # removed since prepare(): render it again
            self._splits = None
            splits = self._ensure()
        return folder, splits[track_id]

    def signals(self, track_id: str) -> dict[str, list[tuple[Path, float]]]:
        # The index asks for a piece's files once, when it (re)builds its entry: the piece is
        # checked against its DONE marker then, as `load` checks it (rendered again if damaged).
        self.load(track_id)
        folder, split = self._folder(track_id)
        return piece_signals(folder, piece_annotations(folder, track_id, self.sr, split)[1])

    def annotations(self, track_id: str) -> Track:
        folder, split = self._folder(track_id)
        return piece_annotations(folder, track_id, self.sr, split)[0]
