"""Score basic-pitch on a dataset split with the same mir_eval code as `mir.evaluate`.

Usage:
    python benchmarks/score_basic_pitch.py --data bach10 --root /path/to/Bach10
    python benchmarks/score_basic_pitch.py --data medleydb --root /path/to/MedleyDB --split train
        [--peer-python $PEERS/basic-pitch/bin/python] [--out benchmarks/results/...json]
        [--per-track-dir DIR] [--ckpt <run>/checkpoints/<x>.ckpt]

Each track is loaded with the project's loader (`mir.data.bach10.Bach10`,
`mir.data.medleydb.MedleyDB`) and its mono audio at 22050 Hz, exactly what our model hears,
is written to a temporary wav and given to basic-pitch (`basic_pitch_peer.py`, run in the
peer's venv; install in benchmarks/README.md). Its output becomes estimates for our tasks:

* ``multif0`` (notes): at each of basic-pitch's frames, the f0s (equal temperament) of
  the note events active there, from ``predict``'s default thresholds (onset 0.5, frame
  0.3, notes of at least 127.7 ms, melodia trick).
* ``multif0`` (contour): local maxima along frequency of the contour posteriorgram
  (3 bins per semitone) that reach 0.3, basic-pitch's frame threshold, as our multi-f0
  head is decoded.
* ``melody`` / ``vocal``: the highest active note per frame; ``bass``: the lowest. Basic
  pitch is not a melody or bass estimator; these are the obvious heuristics.

Scores come from the project's `MultiF0Task` / `SingleF0Task` (`mir_eval.multipitch`,
`mir_eval.melody`), averaged over tracks as `mir.evaluate` does; the table and a JSON with
per-track scores and basic-pitch's timings are written. ``--per-track-dir DIR`` also writes
``DIR/per_track.json`` in `mir.evaluate`'s format (systems ``basic-pitch (notes)`` with
tasks multif0, melody, vocal, bass, and ``basic-pitch (contour)`` with multif0; tracks
named ``<data>/<track>`` as `mir.evaluate` names them), which
``python -m mir.report compare`` reads beside `mir.evaluate`'s output for our checkpoints.

Timing is warm for every system: basic-pitch runs `predict` once untimed before timing
(`basic_pitch_peer.py`), and with ``--ckpt`` our model (`MirModule.predict_track`, full-track
inference and decoding of every head) is run once on the first track before its timed pass,
in the same run; the CPU time per 30 s of audio of each is printed, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
PEER_PYTHON = Path(os.environ.get("PEERS", "peers")) / "basic-pitch" / "bin" / "python"
METRICS = {
    "multif0": ("Accuracy", "Precision", "Recall"),
    "f0": ("Overall Accuracy", "Raw Pitch Accuracy"),
}


def notes_to_multif0(times: np.ndarray, notes: np.ndarray) -> list[np.ndarray]:
    """Active notes' f0s (Hz) at each of `times`; notes are (N, 4): start, end, MIDI, amp."""
    out = []
    for t in times:
        active = notes[(notes[:, 0] <= t) & (t < notes[:, 1]), 2]
        out.append(np.sort(440.0 * 2.0 ** ((active - 69.0) / 12.0)))
    return out


def contour_to_multif0(contour: np.ndarray, freqs: np.ndarray, threshold: float = 0.3) -> list:
    """(T, F) contour salience -> per frame the Hz of local maxima >= `threshold`."""
    sal = contour.T  # (F, T)
    peaks = np.zeros_like(sal, dtype=bool)
    peaks[1:-1] = (sal[1:-1] >= sal[:-2]) & (sal[1:-1] > sal[2:])
    peaks &= sal >= threshold
    return [freqs[peaks[:, t]] for t in range(sal.shape[1])]


def extreme_voice(multif0: list[np.ndarray], highest: bool) -> np.ndarray:
    """The highest (or lowest) f0 of each frame, 0 Hz where none."""
    return np.array([(f.max() if highest else f.min()) if len(f) else 0.0 for f in multif0])


def run_peer(audio_paths: list[Path], out_dir: Path, peer_python: Path) -> list[dict[str, Any]]:
    script = REPO / "benchmarks" / "basic_pitch_peer.py"
    cmd = [str(peer_python), str(script), str(out_dir), *map(str, audio_paths)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"basic-pitch failed:\n{proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def load_dataset(name: str, root: str) -> Any:
    if name == "bach10":
        from mir.data.bach10 import Bach10

        return Bach10(root, sr=22050)
    if name == "medleydb":
        from mir.data.medleydb import MedleyDB

        return MedleyDB(root, sr=22050)
    raise SystemExit(f"--data {name}: expected bach10 or medleydb")


def time_ours(ckpt: str, tracks: list[Any]) -> float:
    """CPU seconds of our checkpoint's `predict_track` over `tracks`, after one untimed run
    on the first track (so that lazy initialisation is not counted, as for basic-pitch)."""
    import torch

    from mir.checkpoint import load_module

    torch.set_num_threads(2)
    module, _ = load_module(ckpt, map_location="cpu")
    module.eval()
    module.predict_track(tracks[0])  # warm-up
    c0 = time.process_time()
    for t in tracks:
        module.predict_track(t)
    return time.process_time() - c0


def write_per_track(
    systems: dict[str, tuple[list[dict[str, float]], dict[str, float]]],
    tracks: list[Any],
    data: str,
    out: Path,
) -> None:
    """`systems`' per-track scores in `mir.evaluate`'s per_track.json format."""
    from mir.report import write_json

    per: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for system, (rows, _) in systems.items():
        task, _, how = system.partition(" (")
        name = "basic-pitch (contour)" if how.startswith("contour") else "basic-pitch (notes)"
        labelled = [t for t in tracks if _task_of(task).has_labels(t)]
        per.setdefault(name, {})[task] = [
            {"track": f"{data}/{t.name}", **r} for t, r in zip(labelled, rows, strict=True)
        ]
    write_json(out / "per_track.json", per)
    print(f"per-track scores written to {out}/per_track.json", file=sys.stderr)


def _task_of(name: str) -> Any:
    from mir.tasks.salience import MultiF0Task, SingleF0Task

    return MultiF0Task("multif0") if name == "multif0" else SingleF0Task(name, voice=name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, choices=("bach10", "medleydb"))
    parser.add_argument("--root", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--peer-python", default=str(PEER_PYTHON))
    parser.add_argument("--out", default=None)
    parser.add_argument("--per-track-dir", default=None, help="write per_track.json here")
    parser.add_argument("--ckpt", default=None, help="also time our checkpoint, warm")
    args = parser.parse_args(argv)
    peer = Path(args.peer_python)
    if not peer.is_file():
        print(f"basic-pitch venv not found ({peer}); see benchmarks/README.md", file=sys.stderr)
        return 2

    from mir.tasks.salience import MultiF0Task, SingleF0Task

    ds = load_dataset(args.data, args.root)
    tracks = [ds.load(t) for t in ds.track_ids(args.split)]
    if not tracks:
        raise SystemExit(f"the {args.split} split of {args.root} is empty")
    ours_cpu = time_ours(args.ckpt, tracks) if args.ckpt else None
    with tempfile.TemporaryDirectory() as tmp:
        wavs = []
        for tr in tracks:
            wavs.append(Path(tmp) / f"{tr.name}.wav")
            sf.write(wavs[-1], tr.audio, tr.sr, subtype="FLOAT")
        timings = run_peer(wavs, Path(tmp) / "out", peer)
        outputs = [dict(np.load(Path(tmp) / "out" / f"{tr.name}.npz")) for tr in tracks]

    systems: dict[str, tuple[list[dict[str, float]], dict[str, float]]] = {}
    mf0 = MultiF0Task("multif0")
    by_notes = [(o["times"], notes_to_multif0(o["times"], o["notes"])) for o in outputs]
    by_contour = [
        (o["times"], contour_to_multif0(o["contour"], o["contour_freqs"])) for o in outputs
    ]
    systems["multif0 (notes)"] = mf0.evaluate(tracks, by_notes)
    systems["multif0 (contour)"] = mf0.evaluate(tracks, by_contour)
    for name, highest in (("melody", True), ("bass", False), ("vocal", True)):
        task = SingleF0Task(name, voice=name)
        if not any(task.has_labels(t) for t in tracks):
            continue
        ests = [(t, extreme_voice(f, highest)) for t, f in by_notes]
        systems[f"{name} ({'highest' if highest else 'lowest'} note)"] = task.evaluate(tracks, ests)

    audio_s = sum(t.duration for t in tracks)
    wall = sum(min(t["seconds"]) for t in timings)
    cpu = sum(min(t["cpu_seconds"]) for t in timings)
    print(f"basic-pitch on {args.data}/{args.split}: {len(tracks)} tracks, {audio_s:.1f} s audio")
    print("| output | metric | mean |\n|---|---|---|")
    for system, (_, summary) in systems.items():
        keys = METRICS["multif0" if system.startswith("multif0") else "f0"]
        for k in keys:
            print(f"| {system} | {k} | {summary.get(k, float('nan')):.3f} |")
    print(
        f"time: {wall:.2f} s wall, {cpu:.2f} s CPU (predict, model loaded, warm) = "
        f"{30 * cpu / audio_s:.2f} s CPU per 30 s of audio"
    )
    if ours_cpu is not None:
        print(
            f"ours ({args.ckpt}): {ours_cpu:.2f} s CPU (warm) = {30 * ours_cpu / audio_s:.2f} s "
            f"CPU per 30 s of audio; basic-pitch / ours = {cpu / ours_cpu:.2f}"
        )
    if args.per_track_dir:
        write_per_track(systems, tracks, args.data, Path(args.per_track_dir))
    result = {
        "data": args.data,
        "split": args.split,
        "tracks": [t.name for t in tracks],
        "audio_seconds": audio_s,
        "timings": timings,
        "ours_cpu_seconds": ours_cpu,
        "scores": {s: {"mean": summ, "per_track": pt} for s, (pt, summ) in systems.items()},
    }
    out = Path(args.out or REPO / "benchmarks" / "results" / f"basic_pitch_{args.data}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
