"""Small parsers and converters for time-series annotations, shared by dataset loaders.

Conventions:
    * Times are in seconds, frequencies in Hz; 0 Hz means unvoiced.
    * Negative f0 values (pYIN / MIREX style "unvoiced guess") are read as unvoiced.
    * Every parse failure raises `DatasetError` naming the file and the 1-based line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mir.data.track import F0Series, MultiF0Series
from mir.errors import DatasetError


def _split_fields(line: str) -> list[str]:
    # Commas when present (MedleyDB, mirdata CSVs), otherwise tabs/spaces (MIREX .txt, .lab).
    if "," in line:
        return [f.strip() for f in line.split(",")]
    return line.split()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_numeric_table(
    path: str | os.PathLike[str],
    min_columns: int = 1,
    max_columns: int | None = None,
    header: bool | None = None,
) -> tuple[list[str] | None, list[np.ndarray]]:
    """Read a delimited numeric text file (CSV, TSV, whitespace) row by row.

    Blank lines are skipped. Rows may have different numbers of fields (multi-f0 files do);
    only fields up to `max_columns` are parsed, so trailing free-text columns are ignored.

    Args:
        path: the file.
        min_columns: fewest numeric fields a row must have.
        max_columns: parse at most this many leading fields of each row (None: all).
        header: True: the first non-blank line is a header; False: no header; None: the
            first non-blank line is a header exactly when its first field is not a number.

    Returns:
        (header fields or None, list of float64 rows, each of shape (n_fields,)).

    Raises:
        DatasetError: the file is missing or a row does not parse.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read annotation file ({exc})") from None
    names: list[str] | None = None
    rows: list[np.ndarray] = []
    first = True
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = _split_fields(line)
        if first:
            first = False
            is_header = header if header is not None else not _is_number(fields[0])
            if is_header:
                names = fields
                continue
        if max_columns is not None:
            fields = fields[:max_columns]
        if len(fields) < min_columns:
            raise DatasetError(
                f"{path}, line {lineno}: expected at least {min_columns} fields, "
                f"got {len(fields)}: {line!r}"
            )
        try:
            values = np.array([float(f) for f in fields], dtype=np.float64)
        except ValueError:
            raise DatasetError(f"{path}, line {lineno}: not a number in {line!r}") from None
        if not np.all(np.isfinite(values)):
            raise DatasetError(f"{path}, line {lineno}: NaN or infinite value in {line!r}")
        rows.append(values)
    return names, rows


def read_time_value_csv(
    path: str | os.PathLike[str], header: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read a two-column ``time,value`` file; extra trailing columns are ignored.

    Some MedleyDB pitch files carry a third free-text column on a few rows (``[2]``);
    only the first two fields of each row are read.

    Returns:
        (times in s, shape (T,); values, shape (T,)), float64.

    Raises:
        DatasetError: missing file, a row that does not parse, or decreasing times,
            naming the file and line.
    """
    _, rows = read_numeric_table(path, min_columns=2, max_columns=2, header=header)
    if not rows:
        return np.zeros(0), np.zeros(0)
    table = np.stack(rows)  # (T, 2)
    times, values = table[:, 0], table[:, 1]
    bad = np.flatnonzero(np.diff(times) < 0)
    if bad.size:
        raise DatasetError(
            f"{path}: times decrease at row {bad[0] + 2} ({times[bad[0]]} -> {times[bad[0] + 1]})"
        )
    if times.size and times[0] < 0:
        raise DatasetError(f"{path}: negative time {times[0]} in the first row")
    return times, values


def read_f0_csv(path: str | os.PathLike[str]) -> F0Series:
    """Read a single-voice ``time,f0`` file as an `F0Series`; f0 <= 0 becomes 0 (unvoiced)."""
    times, freqs = read_time_value_csv(path)
    return times, np.where(freqs > 0, freqs, 0.0)


def midi_to_hz(midi: np.ndarray) -> np.ndarray:
    """MIDI pitch (fractional allowed) to Hz, A4 = 69 = 440 Hz; values <= 0 map to 0 Hz."""
    midi = np.asarray(midi, dtype=np.float64)
    hz = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    return np.where(midi > 0, hz, 0.0)


def frame_grid(n_frames: int, hop_s: float, offset_s: float = 0.0) -> np.ndarray:
    """Frame times ``offset_s + k * hop_s`` for k = 0..n_frames-1, in seconds."""
    return offset_s + hop_s * np.arange(int(n_frames), dtype=np.float64)


def resample_f0(
    times: np.ndarray,
    freqs: np.ndarray,
    grid: np.ndarray,
    max_gap: float | None = None,
    method: str = "nearest",
) -> np.ndarray:
    """Put an f0 series onto a time grid, keeping unvoiced frames unvoiced.

    The input may be sparse (voiced frames only, as MedleyDB pitch files are): a grid point
    farther than `max_gap` from every input time is unvoiced.

    Args:
        times: input times in s, shape (T,), non-decreasing.
        freqs: input f0 in Hz, shape (T,), 0 = unvoiced.
        grid: output times in s, shape (G,), non-decreasing.
        max_gap: largest distance (s) from a grid point to the input sample(s) it reads;
            default half the median grid step (so consecutive voiced input frames stay
            voiced and gaps stay gaps).
        method: ``nearest`` takes the nearest sample's value (unvoiced if that one is);
            ``linear`` interpolates in log-frequency between the two neighbouring samples
            when both are voiced and at most ``2 * max_gap`` apart, else falls back to nearest.

    Returns:
        f0 in Hz on the grid, shape (G,), 0 = unvoiced.
    """
    times = np.asarray(times, dtype=np.float64)
    freqs = np.asarray(freqs, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    if method not in ("nearest", "linear"):
        raise ValueError(f"unknown resampling method {method!r}; expected nearest or linear")
    out = np.zeros(grid.shape, dtype=np.float64)
    if times.size == 0 or grid.size == 0:
        return out
    if max_gap is None:
        step = float(np.median(np.diff(grid))) if grid.size > 1 else 0.0
        max_gap = step / 2 if step > 0 else 1e-6
    freqs = np.where(freqs > 0, freqs, 0.0)
    right = np.clip(np.searchsorted(times, grid), 0, times.size - 1)  # first time >= grid
    left = np.clip(right - 1, 0, times.size - 1)
    d_left = np.abs(grid - times[left])
    d_right = np.abs(times[right] - grid)
    nearest = np.where(d_left <= d_right, left, right)
    d_near = np.minimum(d_left, d_right)
    # Tiny slack for float noise in annotation times written with 9 decimals.
    ok = d_near <= max_gap + 1e-7
    out[ok] = freqs[nearest[ok]]
    if method == "linear":
        span = times[right] - times[left]
        both = (
            (right > left)
            & (freqs[left] > 0)
            & (freqs[right] > 0)
            & (span <= 2 * max_gap + 1e-7)
            & (grid >= times[left])
            & (grid <= times[right])
        )
        w = np.zeros_like(grid)
        np.divide(grid - times[left], span, out=w, where=both)
        logf = (
            np.log2(np.where(both, freqs[left], 1.0)) * (1 - w)
            + np.log2(np.where(both, freqs[right], 1.0)) * w
        )
        out = np.where(both, 2.0**logf, out)
    return out


def union_multif0(series: Sequence[F0Series], grid: np.ndarray) -> MultiF0Series:
    """Union of monophonic f0 series on a common grid, as `mir_eval.multipitch` reads it.

    Args:
        series: single-voice `(times, freqs)` series (dense or voiced-only).
        grid: output frame times in s, shape (T,).

    Returns:
        (grid, list of T arrays holding the voiced f0s at each frame, sorted ascending).
    """
    grid = np.asarray(grid, dtype=np.float64)
    if not series:
        return grid, [np.zeros(0) for _ in grid]
    stacked = np.stack([resample_f0(t, f, grid) for t, f in series])  # (S, T)
    return grid, [np.sort(col[col > 0]) for col in stacked.T]


def select_voice(
    candidates: Sequence[np.ndarray], priority: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Merge several voices on one grid into one: per frame, the voiced candidate with the
    highest priority (ties and no priority: the first voiced candidate).

    Args:
        candidates: f0 arrays in Hz on the same grid, each shape (T,), 0 = unvoiced.
        priority: per-candidate scores on the same grid (e.g. activation confidence), (T,).

    Returns:
        f0 in Hz, shape (T,).
    """
    f0 = np.stack(candidates)  # (S, T)
    score = np.zeros_like(f0) if priority is None else np.stack(priority).astype(np.float64)
    score = np.where(f0 > 0, score, -np.inf)
    best = np.argmax(score, axis=0)  # first maximum wins ties
    return f0[best, np.arange(f0.shape[1])]


def lowest_voice(candidates: Sequence[np.ndarray]) -> np.ndarray:
    """Per frame, the lowest voiced f0 among candidates on one grid (the bass line), (T,)."""
    f0 = np.stack(candidates)  # (S, T)
    low = np.where(f0 > 0, f0, np.inf).min(axis=0)
    return np.where(np.isfinite(low), low, 0.0)


def read_split_file(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read a JSON split file ``{"train": [...], "validation": [...], "test": [...]}``.

    ``validate`` is accepted for ``validation`` (the deepsalience ``data_splits.json``
    spelling); a missing split is empty.

    Raises:
        DatasetError: missing or invalid JSON, unknown keys, non-string ids, or an id
            that appears in two splits.
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split file does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read split file ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: split file must hold a JSON object of lists")
    aliases = {
        "train": "train",
        "validation": "validation",
        "validate": "validation",
        "valid": "validation",
        "val": "validation",
        "test": "test",
    }
    splits: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for key, ids in data.items():
        if key not in aliases:
            raise DatasetError(
                f"{path}: unknown split {key!r}; expected train, validation (or validate), test"
            )
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DatasetError(f"{path}: split {key!r} must be a list of track id strings")
        splits[aliases[key]].extend(ids)
    seen: dict[str, str] = {}
    for name, ids in splits.items():
        for i in ids:
            if i in seen and seen[i] != name:
                raise DatasetError(f"{path}: track {i!r} is in both {seen[i]} and {name}")
            seen[i] = name
    return splits
