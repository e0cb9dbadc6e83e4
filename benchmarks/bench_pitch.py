"""Inference speed of our f0 model against basic-pitch, on one 3-minute track, in one run.

Usage:
    python benchmarks/bench_pitch.py [--seconds 180] [--repeats 2] [--threads 2]
        [--variant 'frontend=tiny'] [--ckpt <mir.train checkpoint>] [--profile]
        [--out benchmarks/results/pitch.json] [--no-slow] [--bf16] [--int8]
        [--peer-python <basic-pitch venv>/bin/python]   (default: $BASIC_PITCH_PYTHON)

The track is real fixture audio (the Bach10 and MedleyDB mixes under ``$MIR_FIXTURES`` or
``../shared/fixtures``, as the tests find them) concatenated and tiled to `--seconds`,
written once as a 22050 Hz mono wav that both systems read. Times are wall-clock, from the
audio file to decoded f0s:

* ours: `mir.audio.load_audio` + `mir.inference.infer_track` (HCQT front end, trunk and
  every head, in 30 s chunks with 3 s margins, as `mir.predict` runs it) + each task's
  `decode`, with `--threads` torch threads, for a freshly built `experiment=multitask_f0`
  model (full HCQT, four f0 heads; the weights do not change the time, the architecture
  does); with `--variant`, also for multitask_f0 with those overrides, and with `--ckpt`
  for that checkpoint's model. `--profile` times each stage. `infer_track` runs the fast
  inference copy of the model (`mir.models.fused.inference_model`: batch norms folded,
  salience heads fused, their wide layers on folded bins, channels-last); the plain model
  is timed too (``slow``, the "before"; skip with `--no-slow`) and the largest difference
  of their outputs is reported. `--bf16` and `--int8` also time the fast path with its trunk
  and heads in bfloat16 or with int8 convolutions (``dtype=torch.qint8``; its one-time
  calibration is timed on its own, before the warm-up, and not included in the best time).
* basic-pitch: `basic_pitch.inference.predict` (audio loading, ONNX model, note creation)
  in its own venv through `benchmarks/basic_pitch_peer.py`, model loaded once; skipped
  with a message when the venv is missing (install: benchmarks/README.md).

Each is warmed up on a 36 s clip, then timed `--repeats` times; the best time is reported
with its real-time factor and the ratio basic-pitch / ours (> 1: ours is faster). The JSON
(written atomically) holds the configuration, machine, load average and every timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
SR = 22050
CPU_SECONDS: list[float] = []  # process CPU time of each `ours_once` call, in order
PEER_PYTHON = os.environ.get("BASIC_PITCH_PYTHON", "")
LOW_PRECISION = (  # (option and JSON key, dtype of the fast path, name)
    ("bf16", torch.bfloat16, "bfloat16"),
    ("int8", torch.qint8, "int8"),
)
FIXTURE_MIXES = (
    "bach10/01-AchGottundHerr/01-AchGottundHerr.wav",
    "bach10/02-AchLiebenChristen/02-AchLiebenChristen.wav",
    "medleydb/Audio/MusicDelta_Reggae/MusicDelta_Reggae_MIX.wav",
)


def fixture_track(seconds: float) -> tuple[np.ndarray, list[str]]:
    """Real fixture mixes at `SR`, concatenated and tiled to `seconds`."""
    from mir.audio import load_audio

    env = os.environ.get("MIR_FIXTURES")
    root = Path(env) if env else REPO.parent / "shared" / "fixtures"  # as tests/conftest.py
    if not root.is_dir():
        raise SystemExit(f"real-audio fixtures not found at {root} (set MIR_FIXTURES)")
    paths = [root / p for p in FIXTURE_MIXES if (root / p).is_file()]
    if not paths:
        raise SystemExit(f"none of {', '.join(FIXTURE_MIXES)} under {root}")
    parts = [load_audio(p, SR) for p in paths]
    one = np.concatenate(parts)
    n = int(round(seconds * SR))
    y = np.tile(one, int(np.ceil(n / len(one))))[:n]
    return (0.9 * y / max(1e-9, float(np.abs(y).max()))).astype(np.float32), [str(p) for p in paths]


def build_module(ckpt: str | None = None, overrides: str = "") -> tuple[Any, str]:
    """The `ckpt` model, or a fresh ``experiment=multitask_f0`` one with `overrides`
    (space-separated Hydra overrides); fresh weights time the same as trained ones."""
    if ckpt:
        from mir.checkpoint import load_module

        module, _ = load_module(ckpt)
        return module.eval(), f"checkpoint {ckpt}"
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    extra = overrides.split()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=multitask_f0", *extra, "output_dir=."])
    return instantiate(cfg.model).eval(), " ".join(["experiment=multitask_f0", *extra])


def ours_once(
    module: Any, path: Path, fast: bool = True, dtype: torch.dtype = torch.float32
) -> float:
    from mir.audio import load_audio
    from mir.data.track import Track
    from mir.inference import infer_track

    t0 = time.perf_counter()
    c0 = time.process_time()
    fe = module.model.frontend
    audio = load_audio(path, fe.sr)
    kinds = {name: task.output_kind for name, task in module.tasks.items()}
    raw = infer_track(
        module.model, audio, kinds, module.chunk_seconds, module.margin_seconds, fast, dtype
    )
    track = Track(name=path.stem, audio=audio, sr=fe.sr)
    for name, task in module.tasks.items():
        task.decode(raw[name], track)
    CPU_SECONDS.append(time.process_time() - c0)
    return time.perf_counter() - t0


def ours_profile(module: Any, path: Path) -> dict[str, float]:
    """Where our time goes, in s for the whole track: loading, then front end, trunk and
    each head (timed on one chunk with its margins, times the number of chunks), then the
    whole `infer_track` and the decoding, each measured on its own."""
    from mir.audio import load_audio
    from mir.data.track import Track
    from mir.inference import infer_track
    from mir.models.features import Features

    out: dict[str, float] = {}
    model = module.model
    t0 = time.perf_counter()
    audio = load_audio(path, model.frontend.sr)
    out["load_audio"] = time.perf_counter() - t0
    n_chunks = int(np.ceil(len(audio) / (module.chunk_seconds * SR)))
    chunk = torch.from_numpy(audio[: int((module.chunk_seconds + 2 * module.margin_seconds) * SR)])
    with torch.no_grad():
        t0 = time.perf_counter()
        hcqt = model.frontend(chunk[None])  # (1, H, F, T)
        out["front end (HCQT)"] = n_chunks * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        trunk = model.trunk(hcqt)  # (1, C, F, T)
        out["trunk"] = n_chunks * (time.perf_counter() - t0)
        feats = Features(audio=chunk[None], hcqt=hcqt, trunk=trunk)
        for name, head in model.heads.items():
            t0 = time.perf_counter()
            head(feats)
            out[f"head {name}"] = n_chunks * (time.perf_counter() - t0)
    kinds = {name: task.output_kind for name, task in module.tasks.items()}
    t0 = time.perf_counter()
    raw = infer_track(model, audio, kinds, module.chunk_seconds, module.margin_seconds)
    out["infer_track (all of the above, chunked)"] = time.perf_counter() - t0
    track = Track(name=path.stem, audio=audio, sr=model.frontend.sr)
    for name, task in module.tasks.items():
        t0 = time.perf_counter()
        task.decode(raw[name], track)
        out[f"decode {name}"] = time.perf_counter() - t0
    return out


def fast_vs_slow(module: Any, path: Path, dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Largest absolute difference of each head's raw output, fast path against plain model."""
    from mir.audio import load_audio
    from mir.inference import infer_track

    audio = load_audio(path, module.model.frontend.sr)
    kinds = {name: task.output_kind for name, task in module.tasks.items()}
    args = (module.model, audio, kinds, module.chunk_seconds, module.margin_seconds)
    fast, slow = infer_track(*args, fast=True, dtype=dtype), infer_track(*args, fast=False)
    return {name: float(np.abs(fast[name] - slow[name]).max()) for name in kinds}


def peer(peer_python: Path, wav: Path, warm: Path, repeats: int, out_dir: Path) -> dict:
    script = REPO / "benchmarks" / "basic_pitch_peer.py"
    t0 = time.perf_counter()
    cmd = [str(peer_python), str(script), str(out_dir), str(warm), str(wav)]
    proc = subprocess.run([*cmd, "--repeats", str(repeats)], capture_output=True, text=True)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"basic-pitch failed:\n{proc.stderr[-2000:]}")
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return {"warmup": lines[0], "timed": lines[1], "subprocess_seconds": total}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ckpt", default=None, help="also time this checkpoint's model")
    parser.add_argument(
        "--variant",
        action="append",
        metavar="OVERRIDES",
        help="also time multitask_f0 with these overrides, e.g. 'frontend=tiny' (repeatable)",
    )
    parser.add_argument("--peer-python", default=PEER_PYTHON, help="basic-pitch venv's python")
    parser.add_argument(
        "--no-slow", action="store_true", help="skip timing the model without the fast path"
    )
    parser.add_argument("--bf16", action="store_true", help="also time the fast path in bfloat16")
    parser.add_argument(
        "--int8", action="store_true", help="also time the fast path with int8 convolutions"
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pitch.json"))
    parser.add_argument("--profile", action="store_true", help="also time each stage of ours")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    y, sources = fixture_track(args.seconds)
    results: dict[str, Any] = {
        "config": {
            "seconds": args.seconds,
            "repeats": args.repeats,
            "threads": args.threads,
            "sources": sources,
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "loadavg_before": os.getloadavg(),
        },
        "ours": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        wav, warm = Path(tmp) / "track.wav", Path(tmp) / "warmup.wav"
        sf.write(wav, y, SR, subtype="FLOAT")
        sf.write(warm, y[: 36 * SR], SR, subtype="FLOAT")

        variants = [("multitask_f0", None, "")]
        variants += [(f"multitask_f0 {v}", None, v) for v in args.variant or []]
        variants += [("ckpt", args.ckpt, "")] if args.ckpt else []
        for label, ckpt, overrides in variants:
            module, desc = build_module(ckpt, overrides)
            fe = module.model.frontend
            ours_once(module, warm)
            times = [ours_once(module, wav) for _ in range(args.repeats)]
            cpu = CPU_SECONDS[-args.repeats :]
            best = min(times)
            entry = {
                "model": desc,
                "tasks": list(module.tasks),
                "params": sum(p.numel() for p in module.parameters()),
                "frontend": {"bins_per_octave": fe.bins_per_octave, "n_bins": fe.n_bins},
                "seconds": times,
                "best": best,
                "x_realtime": args.seconds / best,
                "cpu_seconds": cpu,
            }
            print(
                f"ours, {desc} ({entry['params']:,} params, {fe.n_bins} bins, "
                f"{len(module.tasks)} heads): {best:.2f} s for {args.seconds:.0f} s of audio "
                f"= {args.seconds / best:.1f}x real time (CPU {min(cpu):.2f} s)"
            )
            for key, dtype, what in LOW_PRECISION:
                if not getattr(args, key):
                    continue
                extra: dict[str, Any] = {}
                if dtype == torch.qint8:  # one-time calibration, then cached with the model
                    from mir.models.fused import inference_model

                    t0 = time.perf_counter()
                    inference_model(module.model, dtype)
                    extra["calibration_seconds"] = time.perf_counter() - t0
                ours_once(module, warm, dtype=dtype)
                times_lp = [ours_once(module, wav, dtype=dtype) for _ in range(args.repeats)]
                entry[key] = {
                    "seconds": times_lp,
                    "cpu_seconds": CPU_SECONDS[-args.repeats :],
                    "best": min(times_lp),
                    "max_abs_diff_vs_plain": fast_vs_slow(module, warm, dtype),
                    **extra,
                }
                calib = (
                    f"; calibration once before, {extra['calibration_seconds']:.2f} s"
                    if extra
                    else ""
                )
                print(
                    f"  fast path in {what}: {min(times_lp):.2f} s "
                    f"(CPU {min(entry[key]['cpu_seconds']):.2f} s) "
                    f"= {args.seconds / min(times_lp):.1f}x real time; outputs differ by at most "
                    f"{max(entry[key]['max_abs_diff_vs_plain'].values()):.2e}{calib}"
                )
            if not args.no_slow:
                ours_once(module, warm, fast=False)
                slow = [ours_once(module, wav, fast=False) for _ in range(args.repeats)]
                entry["slow"] = {"seconds": slow, "best": min(slow)}
                entry["fast_path_speedup"] = min(slow) / best
                entry["fast_vs_slow_max_abs_diff"] = fast_vs_slow(module, warm)
                print(
                    f"  without the fast path: {min(slow):.2f} s (fast path "
                    f"{min(slow) / best:.2f}x faster; outputs differ by at most "
                    f"{max(entry['fast_vs_slow_max_abs_diff'].values()):.2e})"
                )
            if args.profile:
                entry["profile"] = ours_profile(module, wav)
                for k, v in entry["profile"].items():
                    print(f"  {k}: {v:.2f} s")
            results["ours"][label] = entry

        peer_python = Path(args.peer_python) if args.peer_python else None
        if peer_python is None or not peer_python.is_file():
            print(
                f"basic-pitch: skipped, no peer venv at {peer_python} (--peer-python or "
                "$BASIC_PITCH_PYTHON; install it as described in benchmarks/README.md)"
            )
            results["basic_pitch"] = {"skipped": f"no peer venv at {peer_python}"}
        else:
            bp = peer(peer_python, wav, warm, args.repeats, Path(tmp) / "bp")
            bp_best = min(bp["timed"]["seconds"])
            bp["best"] = bp_best
            bp["x_realtime"] = args.seconds / bp_best
            results["basic_pitch"] = bp
            print(
                f"basic-pitch {bp['timed']['basic_pitch']} ({bp['timed']['model']}): "
                f"{bp_best:.2f} s = {args.seconds / bp_best:.1f}x real time "
                f"(CPU {min(bp['timed']['cpu_seconds']):.2f} s)"
            )
            for name, entry in results["ours"].items():
                ratio = bp_best / entry["best"]
                entry["ratio_basic_pitch_over_ours"] = ratio
                verdict = "faster" if ratio > 1 else "slower"
                print(f"ratio basic-pitch / ours ({name}): {ratio:.2f} (ours is {verdict})")
                bp_cpu = min(bp["timed"]["cpu_seconds"])
                entry["cpu_ratio_basic_pitch_over_ours"] = bp_cpu / min(entry["cpu_seconds"])
                print(f"  CPU time ratio: {entry['cpu_ratio_basic_pitch_over_ours']:.2f}")
                for key, _, what in LOW_PRECISION:
                    if key in entry:
                        ratio = bp_best / entry[key]["best"]
                        entry[key]["ratio_basic_pitch_over_ours"] = ratio
                        cpu_lp = bp_cpu / min(entry[key]["cpu_seconds"])
                        entry[key]["cpu_ratio_basic_pitch_over_ours"] = cpu_lp
                        print(f"  fast path in {what}: {ratio:.2f} (CPU time ratio {cpu_lp:.2f})")
                if "slow" in entry:
                    ratio = bp_best / entry["slow"]["best"]
                    entry["slow"]["ratio_basic_pitch_over_ours"] = ratio
                    print(f"  without the fast path: {ratio:.2f}")
    results["machine"]["loadavg_after"] = os.getloadavg()

    from mir.report import write_json

    write_json(args.out, results)
    print(f"written to {args.out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
