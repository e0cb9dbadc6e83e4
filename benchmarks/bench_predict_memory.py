"""Benchmark `mir.predict`'s peak memory against the input's length.

Usage:
    python benchmarks/bench_predict_memory.py [--minutes 5 60 180] [--ckpt FILE]
        [--frontend tiny] [--model tiny] [--threads 2]
        [--out benchmarks/results/predict_memory.json]

For each length, a stereo 44.1 kHz 16-bit wav (chords, a vibrato melody, clicks and
noise, generated block by block) is written to a temporary folder, and
``python -m mir.predict`` analyses it in a child process with every head of the
checkpoint (default: a checkpoint built here with random weights for separation, melody,
multi-f0, drums and tagging on ``--frontend``/``--model``; weights do not change the
memory pattern, only how many f0s multi-f0 reports). The child's peak resident memory is
``ru_maxrss`` from `os.wait4`.

Prints, per length, the wall time, real-time factor and peak RSS, and the ratio of the
peak to that of the shortest length measured in the same run (the reference), and writes
them to a JSON file. Goal (issue 11): 180 minutes within 20 % of 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = "[separation,melody,multif0,drums,tagging]"
SR = 44100


def write_signal(path: Path, minutes: float, seed: int = 0) -> None:
    """A stereo test signal written a minute at a time (the generator's memory is flat)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * SR)
    block = 60 * SR
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=2, subtype="PCM_16") as f:
        for start in range(0, n, block):
            t = (np.arange(start, min(n, start + block)) / SR)[:, None]
            chord = sum(np.sin(2 * np.pi * f0 * t) for f0 in (130.8, 164.8, 196.0)) / 3
            melody = np.sin(2 * np.pi * 440 * t + 3 * np.sin(2 * np.pi * 5.5 * t))
            clicks = (np.mod(t, 0.5) < 0.004) * rng.standard_normal(t.shape)
            noise = 0.02 * rng.standard_normal((len(t), 2))
            x = 0.3 * chord + np.array([0.25, 0.1]) * melody + 0.2 * clicks + noise
            f.write(np.clip(x, -1, 1).astype(np.float32))


def random_checkpoint(path: Path, frontend: str, model: str) -> None:
    """A `mir.train`-format checkpoint (state_dict + mir_config) with random weights."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from mir.train import instantiate

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"task={TASKS}", f"frontend={frontend}", f"model={model}", "logger=[csv]"],
        )
    with open_dict(cfg):
        cfg.output_dir = str(path.parent)
    torch.manual_seed(0)
    module = instantiate(cfg.model)
    raw = OmegaConf.to_container(cfg, resolve=True)
    torch.save({"state_dict": module.state_dict(), "mir_config": raw}, path)


def measure(ckpt: Path, audio: Path, out: Path, threads: int) -> tuple[float, int, str]:
    """(wall s, peak RSS bytes, stderr tail) of one `mir.predict` run in a child."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    cmd = [sys.executable, "-m", "mir.predict", f"ckpt={ckpt}", f"input={audio}", f"output={out}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"mir.predict failed on {audio}:\n{err[-3000:]}")
    return wall, usage.ru_maxrss * 1024, err.strip().splitlines()[-1] if err.strip() else ""


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[5.0, 60.0, 180.0])
    p.add_argument("--ckpt", default=None, help="checkpoint (default: random weights)")
    p.add_argument("--frontend", default="tiny")
    p.add_argument("--model", default="tiny")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "predict_memory.json"))
    args = p.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_predict_memory.") as tmp:
        work = Path(tmp)
        ckpt = Path(args.ckpt) if args.ckpt else work / "random.ckpt"
        if not args.ckpt:
            random_checkpoint(ckpt, args.frontend, args.model)
        for minutes in sorted(args.minutes):
            audio = work / f"{minutes:g}min.wav"
            write_signal(audio, minutes)
            wall, peak, summary = measure(ckpt, audio, work / "out", args.threads)
            audio.unlink()
            rows.append({"minutes": minutes, "wall_s": wall, "peak_rss_bytes": peak})
            ref = rows[0]["peak_rss_bytes"]
            print(
                f"{minutes:6g} min: {wall:7.1f} s ({wall / (minutes * 60):.3f} x real time), "
                f"peak RSS {peak / 2**20:7.1f} MiB, {peak / ref:.3f} x the "
                f"{rows[0]['minutes']:g}-min peak   [{summary}]",
                flush=True,
            )
    ref = rows[0]["peak_rss_bytes"]
    for row in rows:
        row["ratio_to_shortest"] = row["peak_rss_bytes"] / ref
    result = {
        "benchmark": "mir.predict peak RSS against input length",
        "input": "stereo 44.1 kHz 16-bit wav, synthetic",
        "checkpoint": args.ckpt
        or f"random weights, task={TASKS} frontend={args.frontend} model={args.model}",
        "threads": args.threads,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "goal": "longest within 20 % of the shortest (ratio <= 1.2)",
        "rows": rows,
    }
    from mir.report import write_json

    write_json(Path(args.out), result)
    print(f"written to {args.out}")
    return result


if __name__ == "__main__":
    main()
