"""Time the authors' Keras deep-salience model (Bittner et al. 2017); run in a TensorFlow venv.

Usage (see benchmarks/README.md, `bench_deepsalience.py`, which runs this):
    <tf venv>/bin/python benchmarks/deepsalience_keras_peer.py INPUTS.npz WEIGHTS.h5 AUDIO.wav
        [--repeats 2] [--threads 2]

This file imports nothing from `mir` or torch: it runs with the peer's interpreter (TensorFlow
2.15 with its Keras 2, librosa, h5py). It builds the published network
(`check_deepsalience_port._keras_model`), loads the authors' released weights, and times, after
one untimed warm-up of each:

* ``network``: the network alone on the HCQT in INPUTS.npz (key ``hcqt``, (H, F, T), computed by
  mir's front end) in the authors' 2000-frame slices;
* ``end_to_end``: the authors' pipeline from the audio file: ``librosa.load`` at 22050 Hz, their
  HCQT (one ``librosa.cqt`` per harmonic, whole-track log scaling), the network in 2000-frame
  slices, and their multi-f0 decoding (local maxima along frequency with salience >= 0.3).

Prints one JSON line: wall and process CPU seconds of each repeat, and TensorFlow's version.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the port check's model definition


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("inputs")
    p.add_argument("weights")
    p.add_argument("audio")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import librosa
    import scipy.signal
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from check_deepsalience_port import SR, _keras_model, _librosa_hcqt, _predict_slices

    model = _keras_model()
    model.load_weights(args.weights)
    hcqt = np.load(args.inputs)["hcqt"]

    def network() -> np.ndarray:
        return _predict_slices(model, hcqt)

    def end_to_end() -> list[np.ndarray]:
        y, _ = librosa.load(args.audio, sr=SR)
        sal = _predict_slices(model, _librosa_hcqt(y))  # (F, T)
        # the authors' get_multif0: peaks along frequency, thresholded
        peaks = scipy.signal.argrelmax(sal, axis=0)
        keep = sal[peaks] >= 0.3
        f_idx, t_idx = peaks[0][keep], peaks[1][keep]
        order = np.argsort(t_idx, kind="stable")
        counts = np.bincount(t_idx, minlength=sal.shape[1])
        return np.split(f_idx[order], np.cumsum(counts)[:-1])  # bins of each frame

    out: dict[str, object] = {"tensorflow": tf.__version__, "threads": args.threads}
    for name, fn in (("network", network), ("end_to_end", end_to_end)):
        fn()  # warm-up: graph tracing, librosa's first calls
        walls, cpus = [], []
        for _ in range(max(1, args.repeats)):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        out[name] = {"seconds": walls, "cpu_seconds": cpus}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
