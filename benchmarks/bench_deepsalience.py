"""Speed of the published deep-salience model: our port against the authors' Keras original.

Usage:
    python benchmarks/bench_deepsalience.py [--model multif0] [--seconds 60] [--repeats 2]
        [--threads 2] [--tf-python <TensorFlow venv>/bin/python] [--weights <folder of .h5>]
        [--out benchmarks/results/deepsalience.json]

Both run in one invocation on the same audio (the real fixture mixes tiled to `--seconds`, as
`bench_pitch.py` builds them, written once as a 22050 Hz wav), with `--threads` intra-op threads,
each warmed up once and timed `--repeats` times (best wall time and process CPU time reported):

* ours (project venv): ``pretrained:deepsalience/<model>``, the released weights converted into
  mir (`mir.pretrained`);
  - ``network``: trunk and head on mir's HCQT of the whole track in the authors' 2000-frame
    slices, under the front end's thread policy (`mir.frontend.choose_threads`: fewer threads
    when other processes keep the cores busy), once as the plain port (`MultiTaskModel`'s
    trunk and head) and once as the fast inference copy (`mir.models.fused.inference_model`:
    batch norms folded, the 70-bin layer on folded bins, channels-last);
  - ``end_to_end``: audio file to decoded multi-f0 as `mir.predict` runs it: `load_audio`,
    `mir.inference.infer_track` (30 s chunks, the fast path) and the task's `decode`.
* Keras (the authors' network, TensorFlow 2.15 in its own venv, `deepsalience_keras_peer.py`):
  ``network`` on the same mir HCQT in 2000-frame slices, and ``end_to_end``: the authors'
  pipeline (`librosa.load`, one `librosa.cqt` per harmonic, 2000-frame slices, peak picking).

The peer venv (never a project dependency): ``python3.11 -m venv <venv>; <venv>/bin/pip install
"tensorflow-cpu==2.15.*" h5py librosa``; the authors' weights: the folder of `multif0.h5` etc.
(default ``../shared/weights/deepsalience`` beside the repository, as the port check uses).
Without either, only ours is timed, and the script says why.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pitch import REPO, SR, fixture_track  # noqa: E402

SLICE = 2000  # frames per slice, as the authors' predict script


def _best(walls: list[float], cpus: list[float]) -> dict[str, Any]:
    return {"seconds": walls, "cpu_seconds": cpus, "best": min(walls), "best_cpu": min(cpus)}


def _timed(fn, repeats: int) -> dict[str, Any]:
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return _best(walls, cpus)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="multif0", help="released model (multif0 is decoded)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tf-python", default=os.environ.get("DEEPSALIENCE_TF_PYTHON", ""))
    p.add_argument("--weights", type=Path, default=REPO.parent / "shared/weights/deepsalience")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/deepsalience.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import mir.pretrained as pretrained
    from mir.audio import load_audio
    from mir.data.track import Track
    from mir.inference import infer_track
    from mir.models.features import Features
    from mir.models.fused import inference_model

    module, _ = pretrained.load(f"deepsalience/{args.model}")
    model = module.model.eval()
    fe = model.frontend
    (task_name,) = module.tasks
    task = module.tasks[task_name]
    y, sources = fixture_track(args.seconds)
    results: dict[str, Any] = {
        "config": vars(args) | {"sources": sources, "slice_frames": SLICE},
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "loadavg_before": os.getloadavg(),
        },
    }
    results["config"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in results["config"].items()
    }
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        wav = Path(tmp) / "track.wav"
        sf.write(wav, y, SR, subtype="FLOAT")
        hcqt = fe(torch.from_numpy(y)[None])  # (1, H, F, T)
        np.savez(Path(tmp) / "inputs.npz", hcqt=hcqt[0].numpy())
        fast = inference_model(model)
        slices = [hcqt[..., t : t + SLICE] for t in range(0, hcqt.shape[-1], SLICE)]
        (head,) = model.heads.values()

        def plain_network() -> None:
            with fe.thread_policy():  # the same thread count as the fast path
                for x in slices:
                    head(Features(audio=torch.zeros(1, 1), hcqt=x, trunk=model.trunk(x)))

        def fast_network() -> None:
            with fe.thread_policy():
                for x in slices:
                    fast.fused(fast.trunk(x.contiguous(memory_format=torch.channels_last)))

        def end_to_end() -> None:
            audio = load_audio(wav, fe.sr)
            raw = infer_track(
                model, audio, {task_name: "frames"}, module.chunk_seconds, module.margin_seconds
            )
            task.decode(raw[task_name], Track(name="track", audio=audio, sr=fe.sr))

        ours = {
            "network_plain": _timed(plain_network, args.repeats),
            "network_fast": _timed(fast_network, args.repeats),
            "end_to_end": _timed(end_to_end, args.repeats),
        }
        results["ours"] = ours
        for name, r in ours.items():
            print(
                f"ours  {name:14s} {r['best']:7.2f} s (CPU {r['best_cpu']:6.2f} s) "
                f"= {args.seconds / r['best']:6.1f}x real time"
            )
        tf_python = Path(args.tf_python) if args.tf_python else None
        h5 = args.weights / f"{args.model}.h5"
        msg = None
        if tf_python is None or not tf_python.is_file():
            msg = f"no TensorFlow venv at {tf_python}"
        elif not h5.is_file():
            msg = f"no weights at {h5}"
        if msg:
            print(f"keras: skipped, {msg} (--tf-python / --weights; see benchmarks/README.md)")
            results["keras"] = {"skipped": msg}
        else:
            peer = REPO / "benchmarks" / "deepsalience_keras_peer.py"
            cmd = [str(tf_python), str(peer), str(Path(tmp) / "inputs.npz"), str(h5), str(wav)]
            cmd += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"keras peer failed:\n{proc.stderr[-2000:]}")
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
            ker = json.loads(line)
            results["keras"] = ker
            for name in ("network", "end_to_end"):
                r = ker[name] = _best(ker[name]["seconds"], ker[name]["cpu_seconds"])
                print(
                    f"keras {name:14s} {r['best']:7.2f} s (CPU {r['best_cpu']:6.2f} s) "
                    f"= {args.seconds / r['best']:6.1f}x real time (TensorFlow {ker['tensorflow']})"
                )
            ratios = {
                "network_plain": ker["network"]["best"] / ours["network_plain"]["best"],
                "network_fast": ker["network"]["best"] / ours["network_fast"]["best"],
                "end_to_end": ker["end_to_end"]["best"] / ours["end_to_end"]["best"],
                "network_fast_cpu": ker["network"]["best_cpu"] / ours["network_fast"]["best_cpu"],
                "end_to_end_cpu": ker["end_to_end"]["best_cpu"] / ours["end_to_end"]["best_cpu"],
            }
            results["ratio_keras_over_ours"] = ratios
            print(
                "keras / ours (> 1: ours is faster): "
                + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
            )
    results["machine"]["loadavg_after"] = os.getloadavg()
    from mir.report import write_json

    write_json(args.out, results)
    print(f"wrote {args.out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
