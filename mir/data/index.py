"""The track index: what every track of a dataset split holds, without its audio, and
windowed reads of that audio from disk.

An index lists, per track: its id, length and rate, the files its mixture and stems are
read from (a *recipe*: each signal is a sum of files times gains), which stems it lends
(present and not silent), and its annotations (kept in memory: they are small). Training
excerpts are then read window by window (`read_window`), so memory and start-up do not grow
with the corpus.

Conventions:
    * A dataset that can say where its audio lives implements `Dataset.signals` (wav or
      flac: libsndfile seeks) and `Dataset.annotations`. Its index is built by reading
      file headers only (`soundfile.info`), plus, for each stem, the first block that is
      not silent (a silent stem is read to its end: it does not lend itself to training).
    * Any other dataset (compressed audio such as mp3 or ``.stem.mp4``, or audio computed
      by its loader) is decoded once through `Dataset.load`, one track at a time, into a
      cache of mono 32-bit float wav files at the target rate under
      ``$MIR_CACHE/decoded`` (default ``~/.cache/mir/decoded``), written atomically; its
      windows are exact copies of what `load` returns.
    * The index is cached under ``$MIR_CACHE/index``, keyed by the dataset's class and
      options and by the sizes and modification times of every file under its root; it
      is rebuilt when any of them changes (tracks whose own files did not change are
      reused). It is written atomically.
    * A file that cannot be read gives one `DatasetError` line naming it; with
      ``skip_bad=True`` such tracks are left out with one warning listing them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pickle
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mir.audio import atomic_write, resample
from mir.data.base import Dataset
from mir.data.track import Track
from mir.errors import DatasetError, MirError

log = logging.getLogger(__name__)

INDEX_VERSION = 2  # 2: `Track.annotations` keyed by kind
MIXTURE = "mixture"
"""Name of the mixture among a track's signals (`Track.audio`)."""

Recipe = tuple[tuple[str, float], ...]
"""A signal as a sum of (file path, gain) terms; empty = known silent."""

_MARGIN_S = 0.05  # context read on each side of a resampled window (s)


def cache_root() -> Path:
    """``$MIR_CACHE``, else ``~/.cache/mir``."""
    cache = os.environ.get("MIR_CACHE")
    return Path(cache).expanduser() if cache else Path.home() / ".cache" / "mir"


@dataclass
class IndexEntry:
    """One track of an index.

    Attributes:
        name: ``<dataset>/<track id>``.
        dataset: the dataset's name in the DataModule.
        track_id: the id its `Dataset` knows.
        n_samples: length of the mixture at `sr`, in samples.
        sr: the target sample rate in Hz.
        file_sr: the rate of its files in Hz (of the mixture's first file).
        channels: channel count of the mixture's first file.
        file_frames: its length in frames at `file_sr`.
        signals: ``mixture`` and each stem -> recipe.
        lends: stem name -> whether it is present and not silent.
        annotations: the track with its annotations and no audio (`Track.without_audio`).
        files: (path, size, mtime_ns) of each file the entry was built from.
        lengths: frames of each audio file, as indexed.
    """

    name: str
    dataset: str
    track_id: str
    n_samples: int
    sr: int
    file_sr: int
    channels: int
    file_frames: int
    signals: dict[str, Recipe]
    lends: dict[str, bool]
    annotations: Track
    files: tuple[tuple[str, int, int], ...] = ()
    lengths: dict[str, int] = field(default_factory=dict)
    _probe: Track | None = field(default=None, repr=False, compare=False)

    @property
    def duration(self) -> float:
        return self.n_samples / self.sr

    def label_track(self) -> Track:
        """The annotations, with one-sample stand-ins for the stems (1 = lends, 0 = silent),
        so that `Task.has_labels` answers as it would on the whole track."""
        if self._probe is None:
            a = self.annotations
            stems = {k: np.full(1, float(v), np.float32) for k, v in self.lends.items()}
            self._probe = dataclasses.replace(
                a,
                name=self.name,
                audio=np.zeros(1, np.float32),
                sr=self.sr,
                annotations={**a.annotations, "stems": stems or None},
            )
        return self._probe


# -- reading -----------------------------------------------------------------------------------


def read_window(entry: IndexEntry, signal: str, start: int, n: int) -> np.ndarray | None:
    """Samples ``[start, start + n)`` of one signal at ``entry.sr``, mono float32 (n,),
    zero-padded past the end; None when the track has no such signal.

    The terms of a recipe are summed at the files' rate, then averaged over channels and
    resampled (as the loaders do with whole files). For files at another rate, the read
    starts on a sample where the two rates' grids meet, with `_MARGIN_S` of context on
    each side, so the resampled window lines up with (and, away from the track's ends,
    matches) a resampling of the whole file.

    Raises:
        DatasetError: a file is unreadable or shorter than when it was indexed (one line
            naming it).
    """
    recipe = entry.signals.get(signal)
    if recipe is None:
        return None
    out = np.zeros(n, np.float32)
    if start >= entry.n_samples or not recipe:
        return out
    m = min(n, entry.n_samples - start)
    sr, fsr = entry.sr, entry.file_sr
    if fsr == sr:
        in0, n_in, a = start, m, 0
    else:
        g = gcd(fsr, sr)
        step_in, step_out = fsr // g, sr // g
        margin = int(np.ceil(_MARGIN_S * sr / step_out))  # in grid steps
        k0 = max(0, start // step_out - margin)
        in0, a = k0 * step_in, start - k0 * step_out
        n_in = int(np.ceil((a + m + margin * step_out) * fsr / sr)) + 1
    total: np.ndarray | None = None
    for path, gain in recipe:
        x = _read_span(path, fsr, in0, n_in, entry.lengths.get(path))
        x = x if gain == 1.0 else x * np.float32(gain)
        total = x if total is None else total + x
    assert total is not None
    mono = total.mean(axis=1) if total.shape[1] > 1 else total[:, 0]
    if fsr != sr:
        full = (2 * entry.file_frames * sr + fsr) // (2 * fsr)  # soxr's length of the file
        y = resample(np.ascontiguousarray(mono), fsr, sr)
        mono = y[a : a + m]
        if len(mono) < min(m, full - start):
            raise DatasetError(f"{recipe[0][0]}: short read at sample {start} of {entry.name}")
    else:
        mono = mono[:m]
    out[: len(mono)] = mono
    if not np.all(np.isfinite(out)):
        raise DatasetError(f"{recipe[0][0]}: audio contains NaN or infinite samples near {start}")
    return out


def _read_span(
    path: str, file_sr: int, start: int, n: int, indexed: int | None = None
) -> np.ndarray:
    """(n, C) float32 frames ``[start, start + n)`` of a file at its own rate, zero-padded
    past its end.

    Raises:
        DatasetError: unreadable, at another rate than indexed, or shorter than indexed.
    """
    try:
        with sf.SoundFile(path) as f:
            if int(f.samplerate) != file_sr:
                raise DatasetError(
                    f"{path}: sample rate {f.samplerate} Hz, indexed at {file_sr} Hz; the file"
                    " changed (the index is rebuilt at the next start)"
                )
            frames = int(f.frames)
            if indexed is not None and frames < min(indexed, start + n):
                raise DatasetError(
                    f"{path}: {frames} frames, indexed with {indexed}: the file was cut short"
                    " or changed (the index is rebuilt at the next start)"
                )
            out = np.zeros((n, f.channels), np.float32)
            k = min(n, max(0, frames - start))
            got = 0
            if k:
                f.seek(start)
                got = len(f.read(k, dtype="float32", always_2d=True, out=out[:k]))
    except MirError:
        raise
    except Exception as exc:  # libsndfile raises several types for corrupt files
        raise DatasetError(f"{path}: cannot read audio ({exc})") from None
    if got < k:
        raise DatasetError(f"{path}: truncated: {got} frames read at {start}, expected {k}")
    return out


# -- building ----------------------------------------------------------------------------------


def dataset_root_of(ds: Dataset) -> Path | None:
    root = getattr(ds, "root", None) or getattr(ds, "cache_dir", None)
    return Path(root) if root is not None else None


def _options(ds: Dataset) -> str:
    """The dataset's class and plain options, which decide what it yields."""
    simple = (str, int, float, bool, type(None))
    opts = {
        k: v
        for k, v in sorted(vars(ds).items())
        if not k.startswith("_")
        and (
            isinstance(v, simple)
            or (isinstance(v, (list, tuple)) and all(isinstance(i, simple) for i in v))
        )
    }
    return f"{type(ds).__module__}.{type(ds).__qualname__}:{opts}:{ds!r}"


def _fingerprint(root: Path | None) -> str:
    """Sizes and modification times of every (non-hidden) file under `root`."""
    h = hashlib.sha256()
    if root is None or not root.is_dir():
        return "none"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = os.path.join(dirpath, fn)
            try:
                st = os.stat(p)
            except OSError:
                continue
            h.update(f"{os.path.relpath(p, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _stat(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return (path, int(st.st_size), int(st.st_mtime_ns))


def _unchanged(files: tuple[tuple[str, int, int], ...]) -> bool:
    try:
        return bool(files) and all(_stat(p) == (p, s, m) for p, s, m in files)
    except OSError:
        return False


def _lends(recipe: Recipe) -> bool:
    """Whether a recipe can be non-silent: some term with a gain and a non-silent file."""
    return any(gain != 0.0 and _first_sound(path) for path, gain in recipe)


def _first_sound(path: str, block: int = 1 << 16) -> bool:
    """Whether a file has a non-zero sample (reads up to the first one)."""
    try:
        with sf.SoundFile(path) as f:
            for x in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                if np.any(x):
                    return True
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read audio ({exc})") from None
    return False


def _scan_track(ds: Dataset, dname: str, tid: str, recipes: dict[str, Recipe]) -> IndexEntry:
    """An entry from the files' headers (no decoding)."""
    if MIXTURE not in recipes or not recipes[MIXTURE]:
        raise DatasetError(f"{dname}: track {tid!r} has no mixture file")
    infos: dict[str, Any] = {}
    for recipe in recipes.values():
        for path, _ in recipe:
            if path not in infos:
                try:
                    infos[path] = sf.info(path)
                except Exception as exc:
                    raise DatasetError(f"{path}: cannot read audio header ({exc})") from None
                if infos[path].frames <= 0:
                    raise DatasetError(f"{path}: audio file is empty")
    first = infos[recipes[MIXTURE][0][0]]
    file_sr, frames = int(first.samplerate), int(first.frames)
    n = (2 * frames * ds.sr + file_sr) // (2 * file_sr)  # soxr's output length
    ann = ds.annotations(tid)
    ann.name = f"{dname}/{ann.name}"
    lends = {k: _lends(r) for k, r in recipes.items() if k != MIXTURE}
    return IndexEntry(
        name=ann.name,
        dataset=dname,
        track_id=tid,
        n_samples=int(n),
        sr=ds.sr,
        file_sr=file_sr,
        channels=int(first.channels),
        file_frames=frames,
        signals=dict(recipes),
        lends=lends,
        annotations=ann,
        files=tuple(_stat(p) for p in infos),
        lengths={p: int(i.frames) for p, i in infos.items()},
    )


def _decode_track(ds: Dataset, dname: str, tid: str, folder: Path) -> IndexEntry:
    """An entry from `Dataset.load`, its audio written once as mono float wav at `ds.sr`."""
    track = ds.load(tid)
    folder.mkdir(parents=True, exist_ok=True)
    signals: dict[str, Recipe] = {}
    lengths: dict[str, int] = {}
    arrays = {MIXTURE: track.audio, **track.get("stems", {})}
    for k, (name, x) in enumerate(arrays.items()):
        path = folder / f"{k:02d}.wav"
        data = np.asarray(x, np.float32)
        atomic_write(path, lambda tmp, d=data: sf.write(tmp, d, ds.sr, "FLOAT", format="WAV"))
        signals[name] = ((str(path), 1.0),)
        lengths[str(path)] = len(data)
    lends = {k: bool(np.any(v)) for k, v in track.get("stems", {}).items()}
    sources = [str(v) for v in track.meta.values() if isinstance(v, str) and os.path.isfile(v)]
    for v in track.meta.values():
        if isinstance(v, dict):
            sources += [str(p) for p in v.values() if isinstance(p, str) and os.path.isfile(p)]
    ann = dataclasses.replace(track.without_audio(), name=f"{dname}/{track.name}")
    return IndexEntry(
        name=ann.name,
        dataset=dname,
        track_id=tid,
        n_samples=len(track.audio),
        sr=ds.sr,
        file_sr=ds.sr,
        channels=1,
        file_frames=len(track.audio),
        signals=signals,
        lends=lends,
        annotations=ann,
        files=tuple(_stat(p) for p in sorted(set(sources))),
        lengths=lengths,
    )


def build_index(
    ds: Dataset,
    dname: str,
    split: str,
    ids: list[str] | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    decode: bool = False,
) -> list[IndexEntry]:
    """The index of one split of `ds` (cached; see the module docstring).

    Args:
        ds: the dataset.
        dname: its name in the DataModule (prefix of the track names).
        split: ``train``, ``validation``, ``test`` or ``all``.
        ids: only these track ids (in this order), instead of the whole split.
        skip_bad: leave unreadable tracks out with one warning, instead of failing.
        progress: show a progress bar while scanning.
        decode: decode every track into the cache, even where `Dataset.signals` names
            files: reads then need no resampling and no sum of stems (faster excerpts,
            at the cost of disk: 4 bytes per sample of each signal).

    Raises:
        DatasetError: an unreadable file (naming it), unless `skip_bad`.
    """
    from tqdm.auto import tqdm

    ids = list(ds.track_ids(split)) if ids is None else [str(i) for i in ids]
    options = _options(ds)
    dkey = hashlib.sha256(options.encode()).hexdigest()[:16]
    root = dataset_root_of(ds)
    parts = [INDEX_VERSION, options, split, dname, ids, skip_bad, decode, _fingerprint(root)]
    key = hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()
    name = f"{type(ds).__name__}-{dkey}-{dname}-{split}{'-decoded' if decode else ''}.pkl"
    path = cache_root() / "index" / name
    old: dict[str, IndexEntry] = {}
    try:
        with open(path, "rb") as f:
            saved = pickle.load(f)
        if saved.get("version") == INDEX_VERSION:
            if saved.get("key") == key:
                _warn_bad(dname, saved["bad"], skip_bad)
                return list(saved["entries"])
            old = {e.track_id: e for e in saved["entries"]}
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, KeyError, TypeError):
        pass
    entries, bad = [], []
    decoded = cache_root() / "decoded" / f"{type(ds).__name__}-{dkey}"
    for tid in tqdm(ids, desc=f"index {dname}/{split}", unit="track", disable=not progress,
                    leave=False, delay=2.0):  # fmt: skip
        prev = old.get(tid)
        if prev is not None and _unchanged(prev.files):
            entries.append(prev)
            continue
        try:
            given = None if decode else ds.signals(tid)
            if given is None:
                folder = decoded / hashlib.sha256(tid.encode()).hexdigest()[:20]
                entries.append(_decode_track(ds, dname, tid, folder))
            else:
                recipes = {k: tuple((str(p), float(g)) for p, g in r) for k, r in given.items()}
                entries.append(_scan_track(ds, dname, tid, recipes))
        except MirError as exc:
            if not skip_bad:
                raise DatasetError(f"{dname}: {exc}") from None
            bad.append(f"{tid}: {exc}")
    _warn_bad(dname, bad, skip_bad)
    blob = pickle.dumps(
        {"version": INDEX_VERSION, "key": key, "entries": entries, "bad": bad},
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    return entries


def _warn_bad(dname: str, bad: list[str], skip_bad: bool) -> None:
    if bad and skip_bad:
        log.warning("%s: skipped %d unreadable tracks: %s", dname, len(bad), "; ".join(bad))
