"""Audio input and output with clear errors and atomic writes."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from mir.errors import AudioError


def load_audio(
    path: str | os.PathLike[str],
    sr: int,
    mono: bool = True,
    expect_sr: int | None = None,
    min_samples: int = 1,
    allow_silence: bool = True,
) -> np.ndarray:
    """Read an audio file as float32, resampled to `sr`.

    Args:
        path: audio file (anything libsndfile reads: wav, flac, ogg, mp3...).
        sr: target sample rate in Hz.
        mono: average channels to shape (N,); otherwise return (C, N).
        expect_sr: if given, the file must already have this rate (no resampling).
        min_samples: shortest acceptable length after resampling, in samples.
        allow_silence: if False, an all-zero file is an error.

    Raises:
        AudioError: the file is missing, unreadable, at the wrong rate, too short or silent.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file does not exist")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for corrupt files
        hint = ""
        if Path(path).suffix.lower() == ".mp3":
            hint = (
                f"; mp3 needs libsndfile >= 1.1 (this soundfile has "
                f"{sf.__libsndfile_version__}): upgrade soundfile or convert to wav"
            )
        raise AudioError(f"{path}: cannot read audio ({exc}){hint}") from None
    if expect_sr is not None and file_sr != expect_sr:
        raise AudioError(f"{path}: sample rate is {file_sr} Hz, expected {expect_sr} Hz")
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio file is empty")
    x = data.T  # (C, N)
    if mono:
        x = x.mean(axis=0)
    if file_sr != sr:
        x = resample(x, file_sr, sr)
    n = x.shape[-1]
    if n < min_samples:
        raise AudioError(
            f"{path}: {n} samples at {sr} Hz is shorter than the minimum of {min_samples}"
        )
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if not allow_silence and not np.any(x):
        raise AudioError(f"{path}: audio is silent")
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling along the last axis (soxr, high quality)."""
    if sr_in == sr_out:
        return x
    import soxr

    if x.ndim == 1:
        return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)
    return np.stack([soxr.resample(c, sr_in, sr_out, quality="HQ") for c in x]).astype(np.float32)


def audio_info(path: str | os.PathLike[str]) -> sf._SoundFileInfo:
    """Header of an audio file (rate, channels, frames), with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file does not exist")
    try:
        return sf.info(str(path))
    except Exception as exc:
        raise AudioError(f"{path}: cannot read audio header ({exc})") from None


TEMP_SUFFIX = ".tmp"
# `.<name>.<8 mkstemp characters>[<suffix>].tmp`, and the `.<name>.<8>.<ext>` of older
# versions, whose audio extension a later folder search took for an input.
_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)*\.tmp$")
_OLD_TEMP = re.compile(r"^\..+(\.[A-Za-z0-9]+)\.[a-z0-9_]{8}\1$")


def atomic_write(path: str | os.PathLike[str], write, suffix: str = "") -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it into place.

    A crash mid-write leaves the previous file (or nothing), never a truncated one. The
    temporary file is hidden and ends in ``.tmp`` (``.<name>.<random><suffix>.tmp``), so no
    search for audio files ever takes it for an input; `remove_temp_files` clears the ones
    a killed run left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=f"{suffix}{TEMP_SUFFIX}"
    )
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_wav(path: str | os.PathLike[str], audio: np.ndarray, sr: int) -> Path:
    """Write float audio, (N,) or (C, N), as 32-bit float wav, atomically."""
    audio = np.asarray(audio, dtype=np.float32)
    data = audio.T if audio.ndim == 2 else audio
    return atomic_write(path, lambda tmp: sf.write(tmp, data, sr, subtype="FLOAT", format="WAV"))


def remove_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files `atomic_write` left under `folder` (a killed run's).

    Returns:
        The files removed.
    """
    removed = []
    for p in Path(folder).rglob(".*"):
        if (_TEMP.match(p.name) or _OLD_TEMP.match(p.name)) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
