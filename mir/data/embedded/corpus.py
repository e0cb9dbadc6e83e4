"""Corpus selection for the embedded dataset: which music21 scores are used, in what order,
and in which split.

Conventions:
    * Eligible: 2 to 4 parts, a single time signature, not a Bach10 chorale nor another
      setting of a Bach10 tune (`BACH10_TITLES`, `BACH10_BWV`, `BACH10_OTHER_SETTINGS`).
    * The order is seeded: each source group of `SOURCES` shuffled, then interleaved.
    * Splits come from a hash of the corpus path, so they stay put as pieces are added.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mir.data.base import SPLITS

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
    for entry in entries.values() if isinstance(entries, dict) else bundle:  # type: ignore[union-attr]
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


def unit_hash(text: str) -> float:
    """A number in [0, 1) drawn from `text` by SHA-1: a seeded choice that needs no RNG."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2.0**64


def assign_splits(
    corpus_paths: list[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, str]:
    """Split by a hash of the corpus path (stable as pieces are added); with 3 or more
    pieces, an empty split takes the piece whose hash lies nearest to its interval."""
    u = {p: unit_hash(p) for p in corpus_paths}
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
