"""Benchmark the HCQT front end against librosa and nnAudio, in one run on one machine.

Usage:
    python benchmarks/bench_hcqt.py [--seconds 30] [--repeats 5] [--threads 2] [--load N]
        [--out benchmarks/results/hcqt.json] [--cqt1992]

Measures, warm and round-robin (so all methods see the same load), the median wall time of
`--repeats` runs of the default HCQT (sr 22050 Hz, hop
256, fmin 32.70 Hz, 60 bins/octave, 6 octaves, harmonics 0.5, 1, 2, 3, 4, 5) on a single clip of
`--seconds` s and on a training-like batch of 16 x 5 s, for:

* librosa: ``librosa.cqt`` once per harmonic (magnitude), the accuracy reference;
* nnAudio ``CQT2010v2(earlydownsample=False, pad_mode='constant')`` (our ``backend="nnaudio"``);
* nnAudio ``CQT1992v2`` per harmonic (only with ``--cqt1992``: slow, ~1 GB of kernels);
* ours, ``HarmonicCQT(backend="fft")`` with log scaling (the default forward), with its default
  thread policy (``threads="auto"``: at most `--threads`, fewer when cores are busy elsewhere),
  and pinned to 1 thread and to `--threads` threads.

``--load N`` starts N CPU-bound processes (plain Python loops) before the measurement; they stop
by themselves after ``--load-seconds`` at the latest and are stopped when the measurement ends.

Prints times as multiples of real time and ratios against librosa and nnAudio, and writes them,
with the relative error of each backend against librosa, to a JSON file (atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mir.frontend import HarmonicCQT

SR = 22050
# A CPU-bound process that stops by itself after argv[1] seconds.
_BUSY = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end: pass"
)


@contextlib.contextmanager
def busy_processes(n: int, seconds: float):
    """Run `n` CPU-bound processes for the body (each stops by itself after `seconds`)."""
    procs = [subprocess.Popen([sys.executable, "-c", _BUSY, str(seconds)]) for _ in range(n)]
    try:
        if procs:
            time.sleep(1.0)  # let them get going
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def _test_signal(n: int, seed: int = 0) -> np.ndarray:
    """Noise plus a chirp and a harmonic tone, float32, peak about 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    chirp = np.sin(2 * np.pi * 40.0 * (2.0 ** (t / 4.0) - 1.0) * 4.0 / np.log(2.0))
    tone = sum(np.sin(2 * np.pi * 220.0 * k * t) / k for k in range(1, 6))
    y = 0.05 * rng.standard_normal(n) + 0.2 * chirp + 0.1 * tone
    return (y / np.abs(y).max() * 0.5).astype(np.float32)


def _librosa_hcqt(y: np.ndarray, fe: HarmonicCQT) -> np.ndarray:
    import librosa

    return np.stack(
        [
            np.abs(
                librosa.cqt(
                    y,
                    sr=fe.sr,
                    hop_length=fe.hop,
                    fmin=fe.fmin * h,
                    n_bins=fe.n_bins,
                    bins_per_octave=fe.bins_per_octave,
                )
            )
            for h in fe.harmonics
        ]
    )  # (H, F, T)


def _rel_error(est: np.ndarray, ref: np.ndarray, trim: int) -> dict[str, float]:
    """Relative errors of (H, F, T) magnitudes away from `trim` frames at each edge."""
    e, r = est[..., trim:-trim], ref[..., trim:-trim]
    per_bin = np.abs(e - r) / np.maximum(r, 1e-8 * r.max())
    return {
        "fro": float(np.linalg.norm(e - r) / np.linalg.norm(r)),
        "median": float(np.median(per_bin)),
        "p99": float(np.percentile(per_bin, 99)),
        "per_harmonic_fro": [
            float(np.linalg.norm(e[h] - r[h]) / np.linalg.norm(r[h])) for h in range(len(r))
        ],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0, help="single-clip length, s")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per method (median)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--batch", type=int, default=16, help="batch size of the training-like batch")
    p.add_argument("--batch-seconds", type=float, default=5.0, help="clip length in the batch, s")
    p.add_argument("--cqt1992", action="store_true", help="also time nnAudio CQT1992v2 (slow)")
    p.add_argument(
        "--no-nnaudio", action="store_true", help="skip nnAudio CQT2010v2 (slow under load)"
    )
    p.add_argument("--load", type=int, default=0, help="CPU-bound processes run beside it")
    p.add_argument(
        "--load-seconds", type=float, default=900.0, help="the load processes stop after this"
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/hcqt.json"))
    args = p.parse_args(argv)

    if args.load < 0:
        p.error("--load must be >= 0")
    torch.set_num_threads(args.threads)
    fe = HarmonicCQT()  # the defaults are the benchmark (threads="auto")
    fe_1 = HarmonicCQT(threads=1)
    fe_n = HarmonicCQT(threads=args.threads)
    fe_lin = HarmonicCQT(log_scale=False)
    fe_nna = None if args.no_nnaudio else HarmonicCQT(log_scale=False, backend="nnaudio")
    n = int(round(args.seconds * SR))
    trim = fe_lin.block_layout().margin  # longest kernel's half length, frames
    if 1 + n // fe.hop <= 2 * trim:
        p.error(
            f"--seconds {args.seconds:g} is too short for the accuracy check against librosa: "
            f"the lowest bins' kernels need more than {2 * trim * fe.hop / SR:.1f} s"
        )
    y = _test_signal(n)
    x = torch.from_numpy(y)[None]  # (1, N)
    nb = int(round(args.batch_seconds * SR))
    xb = torch.from_numpy(np.stack([_test_signal(nb, seed=i + 1) for i in range(args.batch)]))
    audio_s, batch_audio_s = n / SR, args.batch * nb / SR
    load = os.getloadavg()

    results: dict = {
        "config": {
            "sr": fe.sr,
            "hop": fe.hop,
            "fmin": fe.fmin,
            "bins_per_octave": fe.bins_per_octave,
            "n_bins": fe.n_bins,
            "harmonics": list(fe.harmonics),
            "seconds": args.seconds,
            "batch": [args.batch, args.batch_seconds],
            "repeats": args.repeats,
            "threads": args.threads,
            "load_processes": args.load,
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "loadavg_before": load,
        },
        "single": {},
        "batch": {},
        "error_vs_librosa": {},
    }

    # (section, name, call, audio seconds); timed round-robin so that every method sees the same
    # machine load (each warmed up once first).
    methods: list[tuple[str, str, Callable[[], object], float]] = [
        ("single", "librosa", lambda: _librosa_hcqt(y, fe), audio_s),
        ("single", "nnaudio_cqt2010v2", lambda: fe_nna.magnitude(x), audio_s),  # type: ignore
        ("single", "ours_fft", lambda: fe(x), audio_s),
        ("single", "ours_fft_1_thread", lambda: fe_1(x), audio_s),
        ("single", f"ours_fft_{args.threads}_threads", lambda: fe_n(x), audio_s),
        ("single", "ours_fft_magnitude", lambda: fe_lin(x), audio_s),
        ("batch", "librosa", lambda: [_librosa_hcqt(b, fe) for b in xb.numpy()], batch_audio_s),
        ("batch", "nnaudio_cqt2010v2", lambda: fe_nna.magnitude(xb), batch_audio_s),  # type: ignore
        ("batch", "ours_fft", lambda: fe(xb), batch_audio_s),
        ("batch", "ours_fft_1_thread", lambda: fe_1(xb), batch_audio_s),
        ("batch", f"ours_fft_{args.threads}_threads", lambda: fe_n(xb), batch_audio_s),
    ]
    if fe_nna is None:
        methods = [m for m in methods if not m[1].startswith("nnaudio")]
    if args.cqt1992:
        from nnAudio.features import CQT1992v2

        k1992 = [
            CQT1992v2(
                sr=SR,
                hop_length=fe.hop,
                fmin=fe.fmin * h,
                n_bins=fe.n_bins,
                bins_per_octave=fe.bins_per_octave,
                output_format="Magnitude",
                pad_mode="constant",
                verbose=False,
            )
            for h in fe.harmonics
        ]
        methods.append(("single", "nnaudio_cqt1992v2", lambda: [k(x) for k in k1992], audio_s))

    with torch.inference_mode(), busy_processes(args.load, args.load_seconds):
        results["machine"]["loadavg_loaded"] = os.getloadavg()
        times: dict[tuple[str, str], list[float]] = {(s, m): [] for s, m, _, _ in methods}
        # the thread count the default policy used in each timed call of a threads="auto" module
        auto = {"ours_fft": fe, "ours_fft_magnitude": fe_lin}
        chosen: dict[tuple[str, str], list[int]] = {k: [] for k in times if k[1] in auto}
        for _, _, fn, _ in methods:
            fn()  # warm-up (builds kernels, caches)
        for _ in range(args.repeats):
            for section, name, fn, _ in methods:
                t0 = time.perf_counter()
                fn()
                times[section, name].append(time.perf_counter() - t0)
                if name in auto:
                    chosen[section, name].append(auto[name]._policy[2])
        for section, name, _, seconds in methods:
            med = statistics.median(times[section, name])
            results[section][name] = {
                "median_s": med,
                "times_s": times[section, name],
                "x_real_time": seconds / med,
            }
            if (section, name) in chosen:
                results[section][name]["threads_chosen"] = chosen[section, name]
            print(f"{section:6s} {name:22s} {med * 1e3:9.1f} ms  {seconds / med:8.1f}x real time")
        # what the default policy chose in the timed calls (it re-reads the load every 10 s)
        counts = [c for (_, name), cs in chosen.items() if name == "ours_fft" for c in cs]
        results["config"]["auto_threads"] = {str(c): counts.count(c) for c in sorted(set(counts))}

        ref = _librosa_hcqt(y, fe)
        ours = fe_lin(x)[0].numpy()
        results["error_vs_librosa"]["ours_fft"] = _rel_error(ours, ref, trim)
        if fe_nna is not None:
            results["error_vs_librosa"]["nnaudio_cqt2010v2"] = _rel_error(
                fe_nna.magnitude(x)[0].numpy(), ref, trim
            )
        results["error_vs_librosa"]["trim_frames"] = trim

    for section in ("single", "batch"):
        r = results[section]
        lib = r["librosa"]["x_real_time"]
        ours = r["ours_fft"]["x_real_time"]
        r["ratio_vs_librosa"] = ours / lib
        nna = r.get("nnaudio_cqt2010v2")
        r["ratio_vs_nnaudio"] = ours / nna["x_real_time"] if nna else None
        r["ratios_vs_librosa"] = {
            name: v["x_real_time"] / lib for name, v in r.items() if name.startswith("ours_fft")
        }
        print(
            f"{section}: ours is {r['ratio_vs_librosa']:.1f}x librosa "
            f"(1 thread {r['ratios_vs_librosa']['ours_fft_1_thread']:.1f}x, "
            f"{args.threads} threads "
            f"{r['ratios_vs_librosa'][f'ours_fft_{args.threads}_threads']:.1f}x)"
            + (f", {r['ratio_vs_nnaudio']:.1f}x nnAudio CQT2010v2" if nna else "")
        )
    print(
        f"load processes {args.load}; loadavg before {load}, during "
        f"{results['machine']['loadavg_loaded']}, after {os.getloadavg()}; "
        "auto policy (ours_fft) used {threads: timed calls} "
        f"{results['config']['auto_threads']}"
    )
    results["machine"]["loadavg_after"] = os.getloadavg()
    for name, err in results["error_vs_librosa"].items():
        if isinstance(err, dict):
            print(f"error vs librosa, {name}: fro {err['fro']:.4f}, median {err['median']:.4f}")
    from mir.report import write_json

    write_json(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
