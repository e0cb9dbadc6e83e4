"""`EmbeddedDataset`: the rendered corpus as a `Dataset`, rendered into the cache on first use."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from mir.audio import atomic_write
from mir.data.base import Dataset, check_split
from mir.data.embedded.cache import (
    MARKER,
    SKIPPED,
    CorruptPiece,
    default_root,
    piece_annotations,
    piece_signals,
    read_piece,
    rendered_samples,
    write_piece,
)
from mir.data.embedded.corpus import Candidate, assign_splits, piece_order, track_id_of
from mir.data.embedded.synth import FORMAT_VERSION, render_piece
from mir.data.track import Track
from mir.errors import DatasetError

# the package's logger, as before the split into modules
log = logging.getLogger("mir.data.embedded")


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
