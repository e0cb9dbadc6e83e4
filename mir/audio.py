"""Audio input and output with clear errors and atomic writes."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from mir.errors import AudioError, OutputError

log = logging.getLogger("mir.audio")
_STRICT = [False]  # set_strict(): truncated audio is an error instead of a warning


def set_strict(on: bool) -> None:
    """Make audio whose data is shorter than its header declares an error (`AudioError`)
    in this process instead of a warning (``strict=true`` of the commands)."""
    _STRICT[0] = bool(on)


def declared_frames(path: str | os.PathLike[str]) -> int | None:
    """Frames a WAV file's header declares (its ``data`` chunk size), or None when the file
    is not a RIFF/WAVE file or declares no length (size 0 or 0xFFFFFFFF, as streams do).

    libsndfile silently reads what is there, so a file cut short reads as a shorter sound.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else 0
                elif cid == b"data":
                    if block_align <= 0 or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


def check_complete(path: str | os.PathLike[str], frames: int, strict: bool | None = None) -> None:
    """Warn (or raise under `strict`) when `path` holds fewer frames than its header declares.

    Raises:
        AudioError: in strict mode, the data is shorter than declared.
    """
    claimed = declared_frames(path)
    if claimed is None or frames >= claimed:
        return
    msg = (
        f"{path}: the header declares {claimed} samples but the file holds only {frames} "
        "(truncated?)"
    )
    if _STRICT[0] if strict is None else strict:
        raise AudioError(msg)
    log.warning("%s", msg)


def load_audio(
    path: str | os.PathLike[str],
    sr: int,
    mono: bool = True,
    expect_sr: int | None = None,
    min_samples: int = 1,
    allow_silence: bool = True,
    strict: bool | None = None,
) -> np.ndarray:
    """Read an audio file as float32, resampled to `sr`.

    Args:
        path: audio file (anything libsndfile reads: wav, flac, ogg, mp3...).
        sr: target sample rate in Hz.
        mono: average channels to shape (N,); otherwise return (C, N).
        expect_sr: if given, the file must already have this rate (no resampling).
        min_samples: shortest acceptable length after resampling, in samples.
        allow_silence: if False, an all-zero file is an error.
        strict: a file whose data is shorter than its header declares is an error, not a
            warning naming both lengths (None: the process setting, `set_strict`).

    Raises:
        AudioError: the file is missing, unreadable, at the wrong rate, too short or silent,
            or (strict) truncated.
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
    check_complete(path, data.shape[0], strict)
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


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad `x` along its last axis to `n` samples (resampling may differ by a
    sample)."""
    if x.shape[-1] >= n:
        return x[..., :n]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])


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
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=f"{suffix}{TEMP_SUFFIX}"
        )
        os.close(fd)
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        reason = _write_failure(path.parent, exc) if isinstance(exc, Exception) else None
        if reason:
            raise OutputError(f"{path}: cannot write ({reason})") from None
        raise
    return path


FULL_BYTES = 1 << 20  # below this much free space a failed write is reported as a full disk


def _write_failure(folder: Path, exc: Exception) -> str | None:
    """Why a write failed, in words, when the cause is the destination (a full disk,
    permission, a read-only file system); libsndfile reports a full disk only as "System
    error.", so the free space is asked for. None for any other failure."""
    import errno

    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.EROFS:
        return "read-only file system"
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if free < FULL_BYTES:
        return f"no space left on device, {free} bytes free"
    return None


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


class WavWriter:
    """A 32-bit float wav written block by block into a hidden temporary file beside
    `path`, renamed into place by `commit` (so a long stem is never held whole, and an
    interrupted run leaves no truncated file).

    Args:
        path: the final file.
        sr: sample rate in Hz.
        channels: channel count.
    """

    def __init__(self, path: str | os.PathLike[str], sr: int, channels: int) -> None:
        self.path = Path(path)
        self.frames = 0
        self.tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX
            )
            os.close(fd)
            self.file = sf.SoundFile(
                self.tmp,
                "w",
                samplerate=int(sr),
                channels=int(channels),
                subtype="FLOAT",
                format="WAV",
            )
        except Exception as exc:
            self._fail(exc)

    def write(self, block: np.ndarray) -> None:
        """Append (N,) mono or (N, C) frames."""
        try:
            self.file.write(np.asarray(block, dtype=np.float32))
            self.frames += len(block)
        except Exception as exc:
            self._fail(exc)

    def commit(self) -> Path:
        try:
            self.file.close()
            umask = os.umask(0)
            os.umask(umask)
            assert self.tmp is not None
            os.chmod(self.tmp, 0o666 & ~umask)
            os.replace(self.tmp, self.path)
        except Exception as exc:
            self._fail(exc)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (after a failure elsewhere)."""
        with contextlib.suppress(Exception):
            self.file.close()
        if self.tmp is not None and os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def _fail(self, exc: Exception) -> None:
        self.abort()
        reason = _write_failure(self.path.parent, exc)
        if reason:
            raise OutputError(f"{self.path}: cannot write ({reason})") from None
        raise exc
