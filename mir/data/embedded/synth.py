"""Rendering for the embedded dataset: a corpus score becomes stems and annotations.

`render_piece` runs named phases, in this order (the order of the random draws, which
every rendered cache depends on): tempo, parts, transposition, crop, instruments, beats and
drums, one render per stem, the sung vocal line, fade and gain, and the annotations.

Conventions:
    * Stems: `STEMS`, silent where the piece has no such part; ``vocals`` is the soprano
      and ``accompaniment`` alto + tenor + bass + drums, and the mix is exactly
      ``vocals + accompaniment`` (`mix`), float32, peak normalised to `PEAK` with one gain
      for all stems.
    * Tempo is in beats per minute of the metre's beat unit (a dotted quarter in 6/8).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mir.audio import resample
from mir.data.embedded.annotate import (
    PROGRAMS,
    ROLE_PROGRAMS,
    ROLES,
    TPQ,
    VOICE_PROGRAMS,
    Note,
    beat_annotations,
    beat_grid,
    chord_annotations,
    drum_part,
    estimate_mode,
    f0_annotations,
    has_drum_part,
    onset_annotations,
    part_notes,
    piece_tags,
    time_signature,
)
from mir.data.embedded.corpus import MAX_PARTS, MIN_PARTS, Candidate, bwv_number
from mir.data.singing import sing
from mir.errors import DatasetError

FORMAT_VERSION = 2
"""Bumped whenever rendering changes, so that old caches are never trusted (2: chords)."""

TEMPO_CLASSES: dict[str, tuple[float, float]] = {
    "slow": (60.0, 85.0),
    "medium": (85.0, 115.0),
    "fast": (115.0, 160.0),
}
"""Tempo class -> [low, high) in beats per minute; each piece draws its class in turn."""

STEMS = (*ROLES, "drums")
RENDER_SR = 48000  # midirenderer always renders 48 kHz stereo 16-bit
TAIL_S = 1.0  # release time kept after the last note (s)
FADE_S = 0.02  # fade-out at a crop (s)
PEAK = 0.9  # peak of the mix after the one gain
TRANSPOSE_RANGE = (-5, 6)
PITCH_RANGE = (36, 84)  # transposition keeps every part inside C2..C6 where possible


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


def mix(stems: dict[str, np.ndarray]) -> np.ndarray:
    """vocals + accompaniment, in the one summation order used everywhere."""
    return stems["soprano"] + accompaniment(stems)


def accompaniment(stems: dict[str, np.ndarray]) -> np.ndarray:
    """alto + tenor + bass + drums, (N,) float32."""
    return ((stems["alto"] + stems["tenor"]) + stems["bass"]) + stems["drums"]


# ---------------------------------------------------------------------------------------------
# The phases of `render_piece`


def _seeded_rng(key: str) -> np.random.Generator:
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class Tempo:
    """A piece's tempo, quantised to what a MIDI file can hold."""

    tempo_class: str  # a key of TEMPO_CLASSES
    tempo_us: int  # MIDI tempo: microseconds per quarter note
    beat_ql: float  # the metre's beat unit in quarter notes

    @property
    def sec_per_tick(self) -> float:
        return self.tempo_us / 1e6 / TPQ

    @property
    def bpm(self) -> float:
        """Beats per minute of the metre's beat unit."""
        return 60.0 / (self.tempo_us / 1e6 * self.beat_ql)


def choose_tempo(ts: object, rank: int, seed: int, rng: np.random.Generator) -> Tempo:
    """The tempo class from the piece's rank in the seeded order (so classes are balanced),
    the tempo drawn uniformly inside it, for time signature `ts`."""
    tempo_class = list(TEMPO_CLASSES)[(rank + seed) % len(TEMPO_CLASSES)]
    lo, hi = TEMPO_CLASSES[tempo_class]
    beat_ql = float(ts.beatDuration.quarterLength)  # type: ignore[attr-defined]
    tempo_us = round(60e6 / rng.uniform(lo, hi) / beat_ql)
    return Tempo(tempo_class, tempo_us, beat_ql)


def read_parts(
    score: object, corpus_path: str, limit_tick: int
) -> list[list[tuple[int, int, int]]]:
    """(start tick, end tick, MIDI pitch) of each part with notes before `limit_tick`.

    Raises:
        DatasetError: the score has fewer than `MIN_PARTS` or more than `MAX_PARTS` such parts.
    """
    raw_parts = [n for n in (part_notes(p, limit_tick) for p in score.parts) if n]  # type: ignore[attr-defined]
    if not MIN_PARTS <= len(raw_parts) <= MAX_PARTS:
        raise DatasetError(f"{corpus_path}: {len(raw_parts)} parts with notes")
    return raw_parts


def choose_transposition(
    raw_parts: list[list[tuple[int, int, int]]], rng: np.random.Generator
) -> int:
    """A shift in semitones drawn from `TRANSPOSE_RANGE`, kept inside `PITCH_RANGE` where the
    piece allows."""
    lowest = min(p for part in raw_parts for _, _, p in part)
    highest = max(p for part in raw_parts for _, _, p in part)
    shift = int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1))
    up, down = PITCH_RANGE[0] - lowest, PITCH_RANGE[1] - highest  # shift >= up, shift <= down
    return int(np.clip(shift, min(up, down), max(up, down)))  # too wide: stay between the two


@dataclass(frozen=True)
class Crop:
    """Where a piece is cut."""

    duration: float  # s of audio
    n_samples: int
    crop_tick: int  # notes are cut here
    end_tick: int  # the MIDI files end here
    mid_note: bool  # cut while notes sound: the stems are faded out


def choose_crop(
    raw_parts: list[list[tuple[int, int, int]]],
    tempo: Tempo,
    max_duration: float,
    limit_tick: int,
    sr: int,
) -> Crop:
    """At most `max_duration` s, else the last note plus `TAIL_S` s of release."""
    sec_per_tick = tempo.sec_per_tick
    last_end = max(e for part in raw_parts for _, e, _ in part)
    duration = min(float(max_duration), last_end * sec_per_tick + TAIL_S)
    return Crop(
        duration=duration,
        n_samples=round(duration * sr),
        crop_tick=min(limit_tick, last_end),
        end_tick=int(np.ceil(duration / sec_per_tick)) + TPQ // 8,
        mid_note=last_end * sec_per_tick > max_duration,
    )


def arrange(
    raw_parts: list[list[tuple[int, int, int]]],
    shift: int,
    crop_tick: int,
    rng: np.random.Generator,
) -> tuple[dict[str, list[Note]], dict[str, int]]:
    """Name the parts by role (top to bottom), transpose them by `shift` semitones, cut
    them at `crop_tick`, draw velocities, and give each a GM program whose range holds it
    (the soprano a voice patch).

    Returns:
        role -> notes, and role -> GM program (0-based).
    """
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
    return parts, programs


def render_stems(
    parts: dict[str, list[Note]],
    programs: dict[str, int],
    drums: list[Note],
    tempo: Tempo,
    crop: Crop,
    sr: int,
) -> dict[str, np.ndarray]:
    """Each part rendered alone (so that the mix is exactly the sum of the stems): `STEMS`
    -> (N,) float32 at `sr` Hz, silent where the piece has no such part."""
    stems = {name: np.zeros(crop.n_samples, np.float32) for name in STEMS}
    for role, notes in parts.items():
        midi = _midi_bytes(notes, programs[role], tempo.tempo_us, crop.end_tick, drums=False)
        stems[role] = _render(midi, crop.n_samples, sr)
    if drums:
        midi = _midi_bytes(drums, 0, tempo.tempo_us, crop.end_tick, True)
        stems["drums"] = _render(midi, crop.n_samples, sr)
    return stems


def sing_soprano(
    stems: dict[str, np.ndarray],
    soprano: list[Note],
    voice: str,
    corpus_path: str,
    seed: int,
    tempo: Tempo,
    sr: int,
) -> np.ndarray | None:
    """With ``voice="formant"``, replace the soprano stem (in place) by the formant singer
    at the GM line's level, and return the sung f0 (Hz, one value per `CONTROL_HOP`
    samples); with ``voice="gm"`` keep the GM voice patch and return None.

    Raises:
        DatasetError: `voice` is neither.
    """
    if voice == "formant":  # on its own random stream: the rest of the piece is unchanged
        vrng = _seeded_rng(f"voice:{seed}:{corpus_path}")
        sec_per_tick = tempo.sec_per_tick
        sop = [(n.start * sec_per_tick, n.end * sec_per_tick, n.pitch, n.velocity) for n in soprano]
        n_samples = len(stems["soprano"])
        sung, sung_f0 = sing(sop, n_samples, sr, vrng)
        ref = float(np.sqrt(np.mean(stems["soprano"] ** 2)))  # the GM line's level
        stems["soprano"] = sung * np.float32(ref / max(float(np.sqrt(np.mean(sung**2))), 1e-9))
        return sung_f0
    if voice != "gm":
        raise DatasetError(f"embedded dataset: voice must be 'gm' or 'formant', got {voice!r}")
    return None


def master(
    stems: dict[str, np.ndarray], crop: Crop, sr: int
) -> tuple[dict[str, np.ndarray], float]:
    """Fade out a piece cut mid-note (`FADE_S` s), then scale every stem by the one gain
    that peaks the mix at `PEAK`.

    Returns:
        The scaled stems (float32) and the gain.
    """
    n_samples = crop.n_samples
    if crop.mid_note:
        fade = min(round(FADE_S * sr), n_samples)
        ramp = np.linspace(1.0, 0.0, fade, dtype=np.float32)
        for x in stems.values():
            x[n_samples - fade :] *= ramp
    peak = float(np.max(np.abs(mix(stems)))) if n_samples else 0.0
    gain = PEAK / peak if peak > 0 else 1.0
    return {k: (v * np.float32(gain)).astype(np.float32) for k, v in stems.items()}, gain


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

    rng = _seeded_rng(f"{seed}:{cand.corpus_path}")
    score = corpus.parse(cand.corpus_path)
    ts = time_signature(score)
    tempo = choose_tempo(ts, rank, seed, rng)
    limit_tick = int(np.ceil(float(max_duration) / tempo.sec_per_tick))
    raw_parts = read_parts(score, cand.corpus_path, limit_tick)
    mode = estimate_mode([n for part in raw_parts for n in part])
    shift = choose_transposition(raw_parts, rng)
    crop = choose_crop(raw_parts, tempo, max_duration, limit_tick, sr)
    parts, programs = arrange(raw_parts, shift, crop.crop_tick, rng)
    beats = beat_grid(score, ts, crop.crop_tick)
    drums: list[Note] = []
    if has_drum_part(cand.corpus_path, seed):
        beat_ticks = round(tempo.beat_ql * TPQ)
        drums = drum_part(beats, ts, beat_ticks, crop.crop_tick, tempo.bpm, rng)
    stems = render_stems(parts, programs, drums, tempo, crop, sr)
    sung_f0 = sing_soprano(stems, parts["soprano"], voice, cand.corpus_path, seed, tempo, sr)
    stems, gain = master(stems, crop, sr)
    # annotations: the record written as annotations.json (its key order is part of the format)
    sec_per_tick = tempo.sec_per_tick
    part_f0, multif0 = f0_annotations(parts, crop.n_samples, sr, hop, sec_per_tick, sung_f0)
    beat_times, downbeats = beat_annotations(beats, sec_per_tick, crop.duration)
    bwv = (
        cand.corpus_path.rsplit(".", 1)[0].split("/bwv")[-1]
        if bwv_number(cand.corpus_path)
        else None
    )
    annotations = {
        "format": FORMAT_VERSION,
        "hop": hop,
        "sr": sr,
        "n_samples": crop.n_samples,
        "f0": {role: f.tolist() for role, f in part_f0.items()},
        "multif0": multif0,
        "onsets": onset_annotations(drums, sec_per_tick),
        "beats": beat_times,
        "downbeats": downbeats,
        "chords": chord_annotations(parts, sec_per_tick, crop.duration),
        "tags": piece_tags(programs, drums, mode, tempo.tempo_class, ts),
        "meta": {
            "corpus_path": cand.corpus_path,
            "title": cand.title,
            "bwv": bwv,
            "transposition": shift,
            "tempo": tempo.bpm,
            "tempo_class": tempo.tempo_class,
            "time_signature": str(ts.ratioString),  # type: ignore[attr-defined]
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
