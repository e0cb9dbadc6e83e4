"""Benchmark full-track vocal separation: speed and peak memory on a long track.

Usage:
    python benchmarks/bench_separation.py [--minutes 10] [--threads 2]
        [--systems jansson,jansson_single,jansson_guided,mask_unet] [--audio FILE]
        [--out benchmarks/results/separation.json]

Each system separates the same track (`--minutes` long: a synthetic mixture of a sung-like
vibrato tone over chords and noise, or `--audio` tiled to that length) with the full-track
path of `mir.evaluate` / `mir.predict`: `MirModule.predict_track` (30 s chunks with
margins, stitched on the frame grid) and the task's decoding to waveforms. Every system
runs in its own subprocess with `--threads` torch threads, so its peak resident memory
(``ru_maxrss`` from `os.wait4`) is its own; weights are random (speed does not depend on
them). Systems:

* ``jansson``: the published U-Net (Jansson et al. 2017), one network per target,
  fullband reconstruction (``model=unet_jansson``);
* ``jansson_single``: the same with one two-output network (``per_source=false``);
* ``jansson_guided``: one two-output network guided by the HCQT trunk (computes the HCQT);
* ``mask_unet``: the default separation head (``task=separation``), the reference.

Prints, per system, the real-time factor (wall time / audio time; below 1 is faster than
real time), the speed as multiples of real time, peak RSS, and the ratio of its wall time to
the reference's measured in the same run, and writes them to a JSON file (atomically).
Goal (issue 4): a 10-minute track on 2 cores in under 2 GiB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

SYSTEMS = {
    "jansson": ["task=separation", "model=unet_jansson"],
    "jansson_single": [
        "task=separation",
        "model=unet_jansson",
        "task.separation.unet.per_source=false",
    ],
    "jansson_guided": [
        "task=separation",
        "model=unet_jansson",
        "task.separation.unet.per_source=false",
        "task.separation.unet.guided=true",
    ],
    "mask_unet": ["task=separation"],
}
REFERENCE = "mask_unet"
REPO = Path(__file__).resolve().parents[1]


def _signal(n: int, sr: int, audio: str | None):
    import numpy as np

    if audio:
        from mir.audio import load_audio

        x = load_audio(audio, sr)
        return np.resize(x, n).astype(np.float32)  # tiled
    rng = np.random.default_rng(0)
    t = np.arange(n) / sr
    f0 = 220.0 * 2 ** (np.floor(t / 2.0) % 12 / 12) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 8))
    chords = sum(np.sin(2 * np.pi * f * t) for f in (110.0, 138.6, 164.8, 220.0))
    y = 0.3 * voice + 0.2 * chords + 0.02 * rng.standard_normal(n)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def child(system: str, minutes: float, threads: int, audio: str | None) -> None:
    """Run one system and print its timing as one JSON line."""
    import time

    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir

    from mir.data.track import Track
    from mir.train import instantiate

    torch.set_num_threads(threads)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*SYSTEMS[system], "logger=[csv]"])
    module = instantiate(cfg.model).eval()
    sr = module.model.frontend.sr
    n = int(round(minutes * 60 * sr))
    track = Track("bench", _signal(n, sr, audio), sr)
    warm = Track("warm", track.audio[: 40 * sr].copy(), sr)
    module.predict_track(warm)  # warm-up (FFT plans, allocator)
    t0 = time.perf_counter()
    out = module.predict_track(track)["separation"]
    t1 = time.perf_counter()
    assert out.shape == (2, n)
    assert np.isfinite(out).all()
    params = sum(p.numel() for p in module.parameters())
    print(json.dumps({"wall_s": t1 - t0, "audio_s": n / sr, "params": params}), flush=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="track length, min")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems")
    p.add_argument("--audio", default=None, help="tile this audio file instead of synthesis")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/separation.json"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.minutes, args.threads, args.audio)
        return {}

    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    results: dict = {
        "minutes": args.minutes,
        "threads": args.threads,
        "audio": args.audio or "synthetic",
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "systems": {},
    }
    for name in systems:
        cmd = [sys.executable, __file__, "--child", name, "--minutes", str(args.minutes)]
        cmd += ["--threads", str(args.threads)] + (["--audio", args.audio] if args.audio else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=REPO, text=True)
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{name}: child failed with exit code {proc.returncode}")
        r = json.loads(stdout.strip().splitlines()[-1])
        r["rtf"] = r["wall_s"] / r["audio_s"]
        r["x_realtime"] = r["audio_s"] / r["wall_s"]
        r["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
        results["systems"][name] = r
        print(
            f"{name:15s} RTF {r['rtf']:.4f} ({r['x_realtime']:.1f}x real time), "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB, {r['params'] / 1e6:.2f} M parameters",
            flush=True,
        )
    ref = results["systems"].get(REFERENCE)
    if ref:
        for name, r in results["systems"].items():
            r["time_vs_" + REFERENCE] = r["wall_s"] / ref["wall_s"]
            print(f"{name:15s} wall time {r['time_vs_' + REFERENCE]:.2f}x {REFERENCE}'s")
    results["loadavg_after"] = os.getloadavg()
    from mir.report import write_json

    write_json(args.out, results)
    print(f"written to {args.out}")
    return results


if __name__ == "__main__":
    main()
