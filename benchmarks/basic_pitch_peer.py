"""Run basic-pitch (Bittner et al. 2022) on audio files; executed in the peer's own venv.

Usage (see benchmarks/README.md for the install):
    $PEERS/basic-pitch/bin/python benchmarks/basic_pitch_peer.py OUT_DIR AUDIO [AUDIO ...]
        [--repeats 1] [--no-warmup]

This file imports nothing from `mir`: it runs with the peer's interpreter. For each input
it calls `basic_pitch.inference.predict` with its default thresholds (onset 0.5, frame 0.3,
minimum note 127.7 ms, melodia trick) on the ONNX model that ships in the wheel, loaded
once, and writes ``OUT_DIR/<stem>.npz``:

    times     (T,) frame times in s (`basic_pitch.note_creation.model_frames_to_time`)
    contour   (T, 264) contour posteriorgram, 3 bins per semitone from 27.5 Hz
    contour_freqs (264,) Hz of the contour bins
    note      (T, 88) note posteriorgram, MIDI 21-108
    notes     (N, 4) note events: start s, end s, MIDI pitch, amplitude
    seconds   (R,) wall time of each `predict` call (audio file in, notes out)
    cpu_seconds (R,) process CPU time of each call

and prints one JSON line per input with the timings. Before any timing, `predict` runs once
on the first input, untimed (``--no-warmup`` skips it): the ONNX session's first run and
librosa's first calls cost seconds that a first timed file would otherwise carry.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("audio", nargs="+")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args()

    from importlib.metadata import version

    from basic_pitch import ICASSP_2022_MODEL_PATH
    from basic_pitch.constants import FREQ_BINS_CONTOURS
    from basic_pitch.inference import Model, predict
    from basic_pitch.note_creation import model_frames_to_time

    t0 = time.perf_counter()
    model = Model(ICASSP_2022_MODEL_PATH)
    load_s = time.perf_counter() - t0
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    warmup_s = 0.0
    if not args.no_warmup:
        w0 = time.perf_counter()
        predict(args.audio[0], model)
        warmup_s = time.perf_counter() - w0
    for path in args.audio:
        walls, cpus = [], []
        for _ in range(max(1, args.repeats)):
            w0, c0 = time.perf_counter(), time.process_time()
            output, _, note_events = predict(path, model)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        n = output["contour"].shape[0]
        notes = np.array([e[:4] for e in note_events], dtype=np.float64).reshape(-1, 4)
        np.savez_compressed(
            out_dir / f"{Path(path).stem}.npz",
            times=model_frames_to_time(n),
            contour=output["contour"].astype(np.float32),
            contour_freqs=np.asarray(FREQ_BINS_CONTOURS, dtype=np.float64),
            note=output["note"].astype(np.float32),
            notes=notes,
            seconds=np.array(walls),
            cpu_seconds=np.array(cpus),
        )
        info = {
            "input": str(path),
            "seconds": walls,
            "cpu_seconds": cpus,
            "model_load_seconds": load_s,
            "warmup_seconds": warmup_s,
            "n_notes": len(notes),
            "basic_pitch": version("basic-pitch"),
            "model": Path(str(ICASSP_2022_MODEL_PATH)).name,
        }
        print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
