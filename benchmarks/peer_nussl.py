"""SI-SDR of nussl's REPET and 2DFT against ours on the MUSDB18 7-s sample, one definition.

Two steps, in two environments (nussl is a peer tool, never a project dependency):

1. In the project's venv, write our estimates (stereo, 44.1 kHz, as the references):
       python benchmarks/peer_nussl.py write --ckpt <run>/checkpoints/<x>.ckpt \\
           --out-dir /tmp/ours_unet [--mus-root ../shared/fixtures/musdb18] [--score]
   The model separates the mono downmix; its masks are applied to each channel's STFT with
   that channel's phase (`mir.predict.separate_channels`), and the result is resampled to
   the references' 44.1 kHz. ``--score`` also prints their SI-SDR with `mir.bsseval.si_sdr`
   (the same definition as step 2's scorer; it agrees with nussl's to 1e-12 dB).

2. In nussl's venv (install: ``python3.11 -m venv $PEERS/nussl &&
   $PEERS/nussl/bin/pip install torch==2.13.0 nussl "scipy<1.13" "numpy<1.24"
   "pandas<2.3" "zarr<3"``; nussl 1.1.9 also needs the Debian packages ``libsox-dev`` (to
   build soxbindings) and ``ffmpeg`` (stempeg), scipy < 1.13 for
   ``scipy.signal.hamming`` and numpy < 1.24 for ``np.bool``):
       $PEERS/nussl/bin/python benchmarks/peer_nussl.py score \\
           --ours unet=/tmp/ours_unet --ours hcqt=/tmp/ours_hcqt \\
           [--out benchmarks/results/peer_nussl.json] [--per-track-dir DIR]
   (``--ours unet@0=/tmp/unet_seed0``: a system's seed, for ``mir.report compare``)
   runs ``nussl.separation.primitive.Repet`` and ``FT2D`` with their defaults on the stereo
   44.1-kHz mixture (foreground = vocals, background = accompaniment) and scores every
   system with ``nussl.evaluation.BSSEvalScale`` (SI-SDR of Le Roux et al. 2019, zero-mean,
   per channel; we report the mean over the two channels) against the true stems, and
   with museval's BSSEval v4 (``nussl.evaluation.BSSEvalV4``, 1-s windows and hops, the
   median over frames as SiSEC 2018 reports it). ``--per-track-dir DIR`` also writes
   ``DIR/per_track.json`` in `mir.evaluate`'s format (``{system: {"separation": [{"track":
   "musdb18/<name>", "vocals/SI-SDR": ...}]}}``) for ``python -m mir.report compare``, and
   one folder per system (``DIR/<name>[-seed<s>]/``) so that the seeds of one model are
   one system there: ``compare unet=DIR/unet-seed0 unet=DIR/unet-seed1 REPET=DIR/REPET``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

TRACK = "Music Delta - 80s Rock"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_MUS = REPO.parent / "shared" / "fixtures" / "musdb18"


def write_ours(ckpt: str, out_dir: Path, mus_root: Path) -> None:
    import soundfile as sf
    import torch

    from mir.audio import resample
    from mir.checkpoint import load_module
    from mir.data.musdb18 import MUSDB18
    from mir.predict import separate_channels

    torch.set_num_threads(2)
    module, _ = load_module(ckpt)
    task = module.tasks["separation"]
    sr = module.model.frontend.sr
    ds = MUSDB18(mus_root, sr=sr)
    track = ds.load(TRACK)
    stereo, sr_in = ds.load_stereo(TRACK)
    channels = np.stack([resample(c, sr_in, sr) for c in stereo["mixture"]])  # (C, N)
    raw = module.infer(track)["separation"]
    stems = separate_channels(task, raw, channels)  # (S, C, N)
    n_in = stereo["mixture"].shape[-1]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, s in zip(task.sources, stems, strict=True):
        y = np.stack([resample(c, sr, sr_in) for c in s])[:, :n_in]
        y = np.pad(y, ((0, 0), (0, n_in - y.shape[-1])))
        sf.write(out_dir / f"{name}.wav", y.T, sr_in, subtype="FLOAT")
    print(f"wrote {', '.join(task.sources)} to {out_dir}")


def score_ours(out_dir: Path, mus_root: Path) -> dict[str, float]:
    """SI-SDR of our written estimates with `mir.bsseval.si_sdr` (project venv): the same
    definition as nussl's `BSSEvalScale` (zero-mean, per channel, mean over the channels),
    so these numbers sit in the same table as `score`'s."""
    import soundfile as sf

    from mir.bsseval import si_sdr

    folder = mus_root / "train_wav" / TRACK
    read = {k: sf.read(folder / f"{k}.wav", always_2d=True)[0].T for k in ("mixture", "vocals")}
    refs = {"vocals": read["vocals"], "accompaniment": read["mixture"] - read["vocals"]}
    row = {}
    for src, ref in refs.items():
        est = sf.read(out_dir / f"{src}.wav", always_2d=True)[0].T
        row[f"{src}/SI-SDR"] = float(np.mean(si_sdr(ref, est)))
        row[f"{src}/SI-SDRi"] = row[f"{src}/SI-SDR"] - float(np.mean(si_sdr(ref, read["mixture"])))
    print(
        f"ours ({out_dir}): vocals SI-SDR {row['vocals/SI-SDR']:6.2f} dB "
        f"(SI-SDRi {row['vocals/SI-SDRi']:5.2f}), accompaniment SI-SDR "
        f"{row['accompaniment/SI-SDR']:6.2f} dB"
    )
    return row


def _write_json(path: Path, obj: object) -> None:
    """Atomically (this runs in nussl's venv, so it does not import `mir`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def system_folder(name: str) -> tuple[str, int | None, str]:
    """``NAME`` or ``NAME@SEED`` -> (name, seed, folder name: NAME or NAME-seedSEED)."""
    base, at, seed = name.partition("@")
    if not at:
        return name, None, name
    return base, int(seed), f"{base}-seed{seed}"


def write_per_track(results: dict, out_dir: Path) -> Path:
    """`score`'s results in `mir.evaluate`'s per-track format (task ``separation``):
    ``out_dir/per_track.json`` with every system, and one folder per system
    (``out_dir/<name>[-seed<s>]/per_track.json`` as ``model``, with a ``summary.json``
    holding its seed), so that ``mir.report compare unet=<dir>/unet-seed0
    unet=<dir>/unet-seed1 REPET=<dir>/REPET ...`` reads the seeds of one system."""
    track = f"musdb18/{results['track']}"
    per = {
        name: {"separation": [{"track": track, **row}]} for name, row in results["systems"].items()
    }
    path = out_dir / "per_track.json"
    _write_json(path, per)
    for name, rows in per.items():
        _, seed, folder = system_folder(name)
        _write_json(out_dir / folder / "per_track.json", {"model": rows})
        _write_json(out_dir / folder / "summary.json", {"system": name, "seed": seed})
    return path


def score(ours: list[str], out: Path, mus_root: Path) -> dict:
    import nussl

    folder = mus_root / "train_wav" / TRACK
    mix = nussl.AudioSignal(str(folder / "mixture.wav"))
    refs = {k: nussl.AudioSignal(str(folder / f"{k}.wav")) for k in ("vocals",)}
    acc = sum(
        nussl.AudioSignal(str(folder / f"{k}.wav")).audio_data for k in ("drums", "bass", "other")
    )
    refs["accompaniment"] = nussl.AudioSignal(audio_data_array=acc, sample_rate=mix.sample_rate)

    systems: dict[str, dict[str, object]] = {}
    for name, cls in (
        ("REPET", nussl.separation.primitive.Repet),
        ("2DFT", nussl.separation.primitive.FT2D),
    ):
        bg, fg = cls(mix)()
        systems[name] = {"vocals": fg, "accompaniment": bg}
    for spec in ours:
        name, _, path = spec.partition("=")
        systems[name] = {
            k: nussl.AudioSignal(str(Path(path) / f"{k}.wav")) for k in ("vocals", "accompaniment")
        }
    systems["mixture"] = {k: mix for k in ("vocals", "accompaniment")}

    results: dict = {"track": TRACK, "metric": "nussl.evaluation.BSSEvalScale", "systems": {}}
    for name, est in systems.items():
        ev = nussl.evaluation.BSSEvalScale(
            [refs["vocals"], refs["accompaniment"]],
            [est["vocals"], est["accompaniment"]],
            source_labels=["vocals", "accompaniment"],
        )
        s = ev.evaluate()
        row = {}
        for src in ("vocals", "accompaniment"):
            for key in ("SI-SDR", "SI-SIR", "SI-SAR", "SI-SDRi"):
                row[f"{src}/{key}"] = float(np.mean(s[src][key]))  # mean over channels
        # museval's BSSEval v4 (SiSEC 2018): 1-s windows, median over frames
        v4 = nussl.evaluation.BSSEvalV4(
            [refs["vocals"], refs["accompaniment"]],
            [est["vocals"], est["accompaniment"]],
            source_labels=["vocals", "accompaniment"],
            window=mix.sample_rate,
            hop=mix.sample_rate,
        ).evaluate()
        for src in ("vocals", "accompaniment"):
            for key in ("SDR", "SIR", "SAR"):
                row[f"{src}/museval-{key}"] = float(np.nanmedian(v4[src][key]))
        results["systems"][name] = row
        print(
            f"{name:10s} vocals SI-SDR {row['vocals/SI-SDR']:6.2f} dB "
            f"(SI-SDRi {row['vocals/SI-SDRi']:5.2f}), accompaniment SI-SDR "
            f"{row['accompaniment/SI-SDR']:6.2f} dB; museval vocals SDR "
            f"{row['vocals/museval-SDR']:6.2f} dB"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, out)
    print(f"written to {out}")
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write our estimates (project venv)")
    w.add_argument("--ckpt", required=True)
    w.add_argument("--out-dir", type=Path, required=True)
    w.add_argument("--mus-root", type=Path, default=DEFAULT_MUS)
    w.add_argument("--score", action="store_true", help="also print SI-SDR (mir.bsseval)")
    s = sub.add_parser("score", help="run nussl and score every system (nussl venv)")
    s.add_argument("--ours", action="append", default=[], help="NAME[@SEED]=folder of our wavs")
    s.add_argument("--mus-root", type=Path, default=DEFAULT_MUS)
    s.add_argument("--out", type=Path, default=Path("benchmarks/results/peer_nussl.json"))
    s.add_argument("--per-track-dir", type=Path, default=None, help="write per_track.json")
    args = p.parse_args(argv)
    if args.cmd == "write":
        write_ours(args.ckpt, args.out_dir, args.mus_root)
        if args.score:
            score_ours(args.out_dir, args.mus_root)
    else:
        results = score(args.ours, args.out, args.mus_root)
        if args.per_track_dir:
            print(f"written to {write_per_track(results, args.per_track_dir)}")


if __name__ == "__main__":
    main()
