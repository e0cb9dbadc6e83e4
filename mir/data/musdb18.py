"""MUSDB18 (Rafii et al. 2017, SigSep), read in the layouts of the `musdb` package.

Conventions:
    * Layouts under the root (``$MUSDB_PATH``): the native one,
      ``{train,test}/<name>.stem.mp4`` with streams in the order mixture, drums, bass,
      other, vocals; and the decoded one (``musdbconvert``, MUSDB18-HQ),
      ``{train,test}/<name>/{mixture,drums,bass,other,vocals}.wav``. A ``train_wav`` /
      ``test_wav`` folder is taken for the decoded layout when present; `subsets` maps
      ``train``/``test`` to other folder names.
    * Splits follow ``musdb``: ``validation`` is the official 14-track list of
      ``musdb/configs/mus.yaml``, ``train`` the rest of the train folder, ``test`` the
      test folder.
    * `Track.audio` is the mixture file downmixed to mono (channel mean) and resampled;
      stems are ``drums``, ``bass``, ``other``, ``vocals`` and ``accompaniment``
      (= drums + bass + other), treated the same way. The original 44.1 kHz stereo
      signals, which museval scores, are available from `MUSDB18.load_stereo`; their
      paths are in ``Track.meta``.
    * The stems of MUSDB18 sum to the mixture only approximately (AAC coding, limiting):
      ``meta['stem_residual_db']`` is the energy of mixture - sum(stems) relative to the
      mixture, in dB, at the original rate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from mir.audio import audio_info, load_audio, resample
from mir.data.base import Dataset, check_split, dataset_root
from mir.data.track import Track
from mir.errors import AudioError, DatasetError

SOURCES = ("drums", "bass", "other", "vocals")
STEM_ORDER = ("mixture", "drums", "bass", "other", "vocals")
"""Stream order inside a ``.stem.mp4`` file."""

MUSDB_SR = 44100
"""Sample rate of every MUSDB18 recording, in Hz."""

VALIDATION_TRACKS = (
    "Actions - One Minute Smile",
    "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies",
    "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero",
    "Fergessen - Nos Palpitants",
    "Leaf - Summerghost",
    "Skelpolu - Human Mistakes",
    "Young Griffo - Pennies",
    "ANiMAL - Rockshow",
    "James May - On The Line",
    "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
)
"""The official validation tracks (``musdb/configs/mus.yaml``), all from the train folder."""

_STEM_SUFFIX = ".stem.mp4"


class MUSDB18(Dataset):
    """MUSDB18 / MUSDB18-HQ music separation dataset.

    Args:
        root: dataset folder; defaults to ``$MUSDB_PATH``.
        sr: sample rate in Hz of the returned audio.
        is_wav: True for the decoded wav layout, False for ``.stem.mp4``; None detects
            it (the wav layout wins when both are present, as it needs no ffmpeg).
        validation_tracks: names of the train-folder tracks held out for validation;
            None means the official `VALIDATION_TRACKS`.
        subsets: folder name for each of ``train`` and ``test`` under the root, e.g.
            ``{"train": "train_wav"}``; unnamed ones are detected.

    Raises:
        DatasetError: the root or its train/test folders are missing, or the mp4 layout
            is chosen but ffmpeg is not installed.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        sr: int = 22050,
        is_wav: bool | None = None,
        validation_tracks: list[str] | tuple[str, ...] | None = None,
        subsets: dict[str, str] | None = None,
    ) -> None:
        super().__init__(sr)
        self.root = dataset_root(root, "MUSDB_PATH", "MUSDB18")
        self.validation_tracks = tuple(
            VALIDATION_TRACKS if validation_tracks is None else validation_tracks
        )
        subsets = dict(subsets or {})
        unknown = set(subsets) - {"train", "test"}
        if unknown:
            raise DatasetError(f"MUSDB18: unknown subsets {sorted(unknown)}; use train, test")
        if is_wav is None:
            is_wav = self._detect_wav(subsets)
        self.is_wav = bool(is_wav)
        self.subset_dirs = {s: self._subset_dir(s, subsets.get(s)) for s in ("train", "test")}
        if not any(d.is_dir() for d in self.subset_dirs.values()):
            names = ", ".join(str(d) for d in self.subset_dirs.values())
            raise DatasetError(f"MUSDB18: no train or test folder found ({names})")
        # name -> (subset, path: the track folder (wav) or the .stem.mp4 file)
        self._tracks: dict[str, tuple[str, Path]] = {}
        for subset, folder in self.subset_dirs.items():
            for name, path in self._scan(folder):
                if name in self._tracks:
                    raise DatasetError(f"MUSDB18: track {name!r} is in both train and test")
                self._tracks[name] = (subset, path)
        if not self.is_wav and self._tracks:
            _ffmpeg()  # fail at construction, not at the first load

    def __repr__(self) -> str:
        layout = "wav" if self.is_wav else "stem.mp4"
        return f"MUSDB18(root={str(self.root)!r}, sr={self.sr}, layout={layout})"

    # layout ---------------------------------------------------------------------------

    def _detect_wav(self, subsets: dict[str, str]) -> bool:
        for s in ("train", "test"):
            names = [subsets[s]] if s in subsets else [f"{s}_wav", s]
            for n in names:
                d = self.root / n
                if d.is_dir() and any((t / "mixture.wav").is_file() for t in d.iterdir()):
                    return True
        return False

    def _subset_dir(self, subset: str, name: str | None) -> Path:
        if name is not None:
            return self.root / name
        wav_dir = self.root / f"{subset}_wav"
        if self.is_wav and wav_dir.is_dir():
            return wav_dir
        return self.root / subset

    def _scan(self, folder: Path) -> list[tuple[str, Path]]:
        if not folder.is_dir():
            return []
        if self.is_wav:
            return sorted((d.name, d) for d in folder.iterdir() if (d / "mixture.wav").is_file())
        return sorted(
            (f.name[: -len(_STEM_SUFFIX)], f)
            for f in folder.iterdir()
            if f.name.endswith(_STEM_SUFFIX) and f.is_file()
        )

    # Dataset API ----------------------------------------------------------------------

    def track_ids(self, split: str) -> list[str]:
        check_split(split)
        val = set(self.validation_tracks)
        if split == "test":
            return sorted(n for n, (s, _) in self._tracks.items() if s == "test")
        train = [n for n, (s, _) in self._tracks.items() if s == "train"]
        if split == "validation":
            return sorted(n for n in train if n in val)
        return sorted(n for n in train if n not in val)

    def load_stereo(self, track_id: str) -> tuple[dict[str, np.ndarray], int]:
        """The original signals, as museval scores them.

        Returns:
            (signals, sr): ``mixture``, the four sources and ``accompaniment``, each
            float32 of shape (C, N) (C = 2 for MUSDB18), and their sample rate in Hz.

        Raises:
            DatasetError: unknown track, unreadable file, or a stem whose rate, channel
                count or length differs from the mixture's (the message names the file).
        """
        _, path = self._entry(track_id)
        if self.is_wav:
            raw = {k: self._read_wav(path / f"{k}.wav") for k in STEM_ORDER}
        else:
            raw = _decode_stems(path)
        mix, mix_sr = raw["mixture"][0], raw["mixture"][1]
        for k in SOURCES:
            x, k_sr = raw[k]
            where = path / f"{k}.wav" if self.is_wav else f"{path} (stream {STEM_ORDER.index(k)})"
            if k_sr != mix_sr:
                raise DatasetError(
                    f"MUSDB18: {where}: sample rate {k_sr} Hz differs from the mixture's "
                    f"{mix_sr} Hz"
                )
            if x.shape != mix.shape:
                raise DatasetError(
                    f"MUSDB18: {where}: shape (channels, samples) {x.shape} differs from "
                    f"the mixture's {mix.shape}"
                )
        out = {k: raw[k][0] for k in STEM_ORDER}
        out["accompaniment"] = out["drums"] + out["bass"] + out["other"]
        return out, mix_sr

    def load(self, track_id: str) -> Track:
        subset, path = self._entry(track_id)
        stereo, file_sr = self.load_stereo(track_id)
        mix = stereo["mixture"]
        residual = mix - stereo["accompaniment"] - stereo["vocals"]
        residual_db = 10 * np.log10(
            (np.sum(residual.astype(np.float64) ** 2) + 1e-20)
            / (np.sum(mix.astype(np.float64) ** 2) + 1e-20)
        )
        # mono = channel mean; resampling is linear, so accompaniment stays drums+bass+other
        mono = {k: resample(v.mean(axis=0), file_sr, self.sr) for k, v in stereo.items()}
        mono = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in mono.items()}
        audio = mono.pop("mixture")
        meta: dict[str, object] = {
            "split": self._split_of(track_id, subset),
            "subset": subset,
            "original_sr": file_sr,
            "channels": int(mix.shape[0]),
            "stem_residual_db": float(residual_db),
            "stem_residual_max": float(np.max(np.abs(residual))),
        }
        if self.is_wav:
            meta["stem_paths"] = {k: str(path / f"{k}.wav") for k in STEM_ORDER}
        else:
            meta["stem_file"] = str(path)
            meta["stem_order"] = list(STEM_ORDER)
        artist, _, title = track_id.partition(" - ")
        meta["artist"], meta["title"] = artist, title
        return Track(track_id, audio, self.sr, {"stems": mono}, meta)

    def signals(self, track_id: str) -> dict[str, list[tuple[Path, float]]] | None:
        """The wav files of the decoded layout (the ``.stem.mp4`` one is decoded into a
        cache instead: None)."""
        _, path = self._entry(track_id)
        if not self.is_wav:
            return None
        out = {k: [(path / f"{k}.wav", 1.0)] for k in STEM_ORDER}
        out["accompaniment"] = [(path / f"{k}.wav", 1.0) for k in ("drums", "bass", "other")]
        return out

    def annotations(self, track_id: str) -> Track:
        """Names and metadata only (MUSDB18 has no annotations besides its stems); the
        stem residual of `load`'s metadata needs the audio and is left out."""
        subset, path = self._entry(track_id)
        if not self.is_wav:
            return super().annotations(track_id)
        artist, _, title = track_id.partition(" - ")
        meta: dict[str, object] = {
            "split": self._split_of(track_id, subset),
            "subset": subset,
            "stem_paths": {k: str(path / f"{k}.wav") for k in STEM_ORDER},
            "artist": artist,
            "title": title,
        }
        return Track(name=track_id, audio=np.zeros(0, np.float32), sr=self.sr, meta=meta)

    # helpers --------------------------------------------------------------------------

    def _entry(self, track_id: str) -> tuple[str, Path]:
        if track_id not in self._tracks:
            raise DatasetError(f"MUSDB18: unknown track {track_id!r} under {self.root}")
        return self._tracks[track_id]

    def _split_of(self, track_id: str, subset: str) -> str:
        if subset == "test":
            return "test"
        return "validation" if track_id in self.validation_tracks else "train"

    @staticmethod
    def _read_wav(path: Path) -> tuple[np.ndarray, int]:
        try:
            file_sr = int(audio_info(path).samplerate)
            x = load_audio(path, sr=file_sr, mono=False)
        except AudioError as exc:
            raise DatasetError(f"MUSDB18: {exc}") from None
        return x, file_sr


def _ffmpeg() -> str:
    """Path of an ffmpeg executable (system, or the `imageio-ffmpeg` wheel's)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        try:
            import imageio_ffmpeg

            exe = imageio_ffmpeg.get_ffmpeg_exe()
        except Exception:
            exe = None
    if exe is None:
        raise DatasetError(
            "MUSDB18: reading .stem.mp4 files needs ffmpeg, which was not found; install it "
            "(apt-get install ffmpeg, or pip install imageio-ffmpeg) or use the decoded wav "
            "layout (`musdbconvert <root> <wav_root>` from the musdb package, or MUSDB18-HQ) "
            "with is_wav=True"
        )
    return exe


def _decode_stems(path: Path) -> dict[str, tuple[np.ndarray, int]]:
    """Decode the five streams of a ``.stem.mp4`` with ffmpeg, as (C, N) float32 at 44.1 kHz."""
    exe = _ffmpeg()
    out: dict[str, tuple[np.ndarray, int]] = {}
    for i, name in enumerate(STEM_ORDER):
        cmd = [
            exe, "-nostdin", "-v", "error", "-i", str(path), "-map", f"0:a:{i}",
            "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "2", "-ar", str(MUSDB_SR), "-",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise DatasetError(
                f"MUSDB18: {path}: ffmpeg cannot decode stream {i} ({name}): "
                f"{msg[-1] if msg else 'unknown error'}"
            )
        x = np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, 2).T  # (C, N)
        if x.shape[1] == 0:
            raise DatasetError(f"MUSDB18: {path}: stream {i} ({name}) is empty")
        out[name] = (np.ascontiguousarray(x, dtype=np.float32), MUSDB_SR)
    return out
