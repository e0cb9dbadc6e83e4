"""Benchmark full-track drums+beats inference against madmom's beat tracker, in one run.

Usage:
    python benchmarks/bench_drums.py [--ckpt <drums+beats checkpoint>] [--seconds 180]
        [--repeats 3] [--threads 2] [--madmom-python $PEERS/madmom/bin/python]
        [--out benchmarks/results/drums.json]

One track of `--seconds` s (the MDB Drums fixtures' drum-only stems, tiled; a synthetic
drum pattern when the fixtures are absent) is written to a temporary 44.1 kHz wav, and
both systems are timed from that file to their beat times:

* ours: `mir.audio.load_audio` and `MirModule.predict_track` (HCQT front end, trunk, the
  drums and beats heads in 30 s chunks, peak picking and the DP beat tracker), with
  `--threads` torch threads; the model of `--ckpt`, or, without one, an untrained model of
  ``experiment=vogl_drums_beats`` (same size, so the same speed up to decoding);
* madmom: ``RNNBeatProcessor`` + ``DBNBeatTrackingProcessor`` (the ``DBNBeatTracker``
  program), timed inside a subprocess of its own venv (`benchmarks/madmom_peer.py`), with
  `--threads` processes for its 8 RNNs and as many BLAS threads. Skipped, with a message,
  when that venv is missing (see `benchmarks/README.md` for the install).

Each is warmed up once and timed `--repeats` times; the median wall time is reported as a
multiple of real time, with the ratio madmom time / our time (> 1: ours is faster). The
JSON (`--out`, written atomically) holds the configuration, the machine and load, every
timing and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
FILE_SR = 44100
DEFAULT_MADMOM = Path(os.environ.get("PEERS", "peers")) / "madmom" / "bin" / "python"


def _fixtures() -> Path | None:
    env = os.environ.get("MIR_FIXTURES")
    for root in [Path(env)] if env else [REPO.parent / "shared" / "fixtures"]:
        d = root / "mdb_drums" / "audio" / "drum_only"
        if d.is_dir() and any(d.glob("*.wav")):
            return d
    return None


def _synthetic_drums(n: int, sr: int) -> np.ndarray:
    """Kick on beats 1 and 3, snare on 2 and 4, hi-hat on eighths, 120 BPM."""
    rng = np.random.default_rng(0)
    y = np.zeros(n, dtype=np.float32)
    t = np.arange(int(0.15 * sr)) / sr
    kick = np.sin(2 * np.pi * 60 * t) * np.exp(-t / 0.05)
    snare = rng.standard_normal(len(t)) * np.exp(-t / 0.04) * 0.5
    hat = rng.standard_normal(len(t)) * np.exp(-t / 0.01) * 0.2
    for k, start in enumerate(range(0, n - len(t), sr // 4)):  # eighth notes at 120 BPM
        hit = hat + (kick if k % 4 == 0 else snare if k % 4 == 2 else 0)
        y[start : start + len(t)] += hit.astype(np.float32)
    return 0.5 * y / np.abs(y).max()


def _tiled_track(seconds: float) -> tuple[np.ndarray, str]:
    """(N,) audio at `FILE_SR` and a description of where it came from."""
    from mir.audio import load_audio

    n = int(round(seconds * FILE_SR))
    folder = _fixtures()
    if folder is None:
        return _synthetic_drums(n, FILE_SR), "synthetic drum pattern (fixtures absent)"
    files = sorted(folder.glob("*.wav"))
    parts = [load_audio(f, FILE_SR) for f in files]
    y = np.concatenate(parts * (n // sum(len(p) for p in parts) + 1))[:n]
    return y.astype(np.float32), f"{len(files)} MDB Drums drum-only stems tiled: " + ", ".join(
        f.name for f in files
    )


def _module(ckpt: str | None):
    if ckpt:
        from mir.checkpoint import load_module

        module, _ = load_module(ckpt)
        return module, str(ckpt)
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from mir.train import instantiate

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=vogl_drums_beats"])
    with open_dict(cfg):
        cfg.output_dir = tempfile.gettempdir()
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model), "untrained experiment=vogl_drums_beats"


def time_ours(module, wav: Path, repeats: int) -> tuple[list[float], dict]:
    from mir.audio import load_audio
    from mir.data.track import Track

    sr = module.model.frontend.sr

    def once() -> dict:
        audio = load_audio(wav, sr)
        return module.predict_track(Track(name="bench", audio=audio, sr=sr))

    with torch.inference_mode():
        est = once()  # warm-up (kernel spectra for the chunk length are built on first use)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
    out = {"n_beats": len(est["beats"].beats)} if "beats" in est else {}
    if "drums" in est:
        out["n_drum_onsets"] = int(sum(len(o) for o in est["drums"]))
    return times, out


def time_madmom(python: Path, wav: Path, repeats: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "madmom.json"
        env = {
            **os.environ,
            **{
                k: str(threads)
                for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            },
        }
        cmd = [str(python), str(REPO / "benchmarks" / "madmom_peer.py"), "--no-onsets"]
        cmd += ["--repeats", str(repeats + 1), "--threads", str(threads), "--out", str(out)]
        t0 = time.perf_counter()
        subprocess.run([*cmd, str(wav)], check=True, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        res = json.loads(out.read_text())
    entry = next(iter(res["files"].values()))
    return {
        "version": res["madmom_version"],
        "times": entry["beat_seconds"][1:],  # the first run is the warm-up
        "subprocess_wall_s": wall,
        "n_beats": len(entry["beats"]),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default=None, help="drums+beats checkpoint (default: untrained)")
    p.add_argument("--seconds", type=float, default=180.0, help="track length, s")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per system (median)")
    p.add_argument("--threads", type=int, default=2, help="torch threads / madmom processes")
    p.add_argument("--madmom-python", type=Path, default=DEFAULT_MADMOM)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "drums.json")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    module, model_desc = _module(args.ckpt)
    module.eval()
    y, source = _tiled_track(args.seconds)
    results: dict = {
        "config": {
            "seconds": args.seconds,
            "repeats": args.repeats,
            "threads": args.threads,
            "audio": source,
            "model": model_desc,
            "tasks": list(module.tasks),
            "parameters": sum(q.numel() for q in module.parameters()),
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "loadavg_before": os.getloadavg(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "bench.wav"
        sf.write(wav, y, FILE_SR)
        ours, info = time_ours(module, wav, args.repeats)
        med = statistics.median(ours)
        results["ours"] = {"times": ours, "median_s": med, "x_realtime": args.seconds / med, **info}
        print(f"audio: {source}, {args.seconds:.0f} s; model: {model_desc}")
        print(
            f"ours (drums+beats, front end included): {med:.2f} s "
            f"= {args.seconds / med:.1f}x real time"
        )
        if not args.madmom_python.is_file():
            print(
                f"madmom: skipped, no peer venv at {args.madmom_python} "
                "(install: see benchmarks/README.md, 'bench_drums.py')"
            )
            results["madmom"] = {"skipped": f"no venv at {args.madmom_python}"}
        else:
            mm = time_madmom(args.madmom_python, wav, args.repeats, args.threads)
            mm_med = statistics.median(mm["times"])
            results["madmom"] = {**mm, "median_s": mm_med, "x_realtime": args.seconds / mm_med}
            results["ratio_madmom_over_ours"] = mm_med / med
            print(
                f"madmom {mm['version']} DBNBeatTracker (RNNBeatProcessor + DBN): {mm_med:.2f} s "
                f"= {args.seconds / mm_med:.1f}x real time"
            )
            print(f"ratio madmom / ours: {mm_med / med:.2f}x (> 1: ours is faster)")
    results["machine"]["loadavg_after"] = os.getloadavg()
    from mir.report import write_json

    write_json(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
