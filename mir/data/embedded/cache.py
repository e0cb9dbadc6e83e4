"""The embedded dataset's cache format: one folder per piece, written atomically, trusted only
behind a DONE marker that records the format, length, sample rate and checksums.

Conventions:
    * A piece folder holds ``mix.wav``, ``stems/<stem>.wav`` (silent stems are not stored),
      ``annotations.json`` and, written last, the `MARKER` file (JSON: ``format``,
      ``n_samples``, ``sr`` and ``crc32``, a CRC-32 per file); a score that cannot be
      rendered gets a `SKIPPED` file instead.
    * A folder without a valid marker of this `FORMAT_VERSION` is rendered again; a file
      that differs from its marker raises `CorruptPiece`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mir.audio import atomic_write, load_audio, write_wav
from mir.data.embedded.synth import FORMAT_VERSION, STEMS, RenderedPiece, accompaniment, mix
from mir.data.track import Track
from mir.errors import AudioError, DatasetError

MARKER = "DONE"  # written last: a folder without it is never trusted
SKIPPED = "SKIPPED"  # a score that cannot be rendered: not tried again


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
        mixture = mix(piece.stems)
        write_wav(tmp / "mix.wav", mixture, sr)
        sums["mix.wav"] = _checksum(mixture)
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
    stems["accompaniment"] = accompaniment(stems)
    return _track(ann, track_id, sr, split, audio, stems)


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
    return _track(ann, track_id, sr, split, np.zeros(0, np.float32), None), set(ann["stems"])


def _track(
    ann: dict[str, Any],
    track_id: str,
    sr: int,
    split: str,
    audio: np.ndarray,
    stems: dict[str, np.ndarray] | None,
) -> Track:
    """A `Track` from a piece's ``annotations.json`` record (f0 on frames of ``hop`` samples)."""
    hop = int(ann["hop"])
    n_frames = len(next(iter(ann["f0"].values())))
    times = np.arange(n_frames) * hop / sr
    f0 = {r: np.asarray(v, dtype=np.float64) for r, v in ann["f0"].items()}
    melody = f0["soprano"]
    annotations = {
        "stems": stems,
        "melody": (times, melody),
        "vocal": (times, melody.copy()),
        "bass": (times, f0["bass"]),
        "multif0": (times, [np.asarray(f, dtype=np.float64) for f in ann["multif0"]]),
        "onsets": {k: np.asarray(v, dtype=np.float64) for k, v in ann["onsets"].items()},
        "beats": np.asarray(ann["beats"], dtype=np.float64),
        "downbeats": np.asarray(ann["downbeats"], dtype=np.float64),
        "chords": (
            np.array([r[:2] for r in ann["chords"]], dtype=np.float64).reshape(-1, 2),
            [str(r[2]) for r in ann["chords"]],
        ),
        "tags": list(ann["tags"]),
    }
    return Track(track_id, audio, sr, annotations, dict(ann["meta"], split=split))
