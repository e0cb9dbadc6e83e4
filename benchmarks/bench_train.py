"""Training throughput of every experiment at its own size, and where the time goes.

Usage:
    python benchmarks/bench_train.py [--experiments multitask_f0,vogl_drums_beats] [--steps 5]
        [--warmup 1] [--threads 2] [--trainer cpu|gpu] [--precisions 32,bf16-mixed,16-mixed]
        [--out benchmarks/results/train.json]
        [extra Hydra overrides, e.g. data.num_workers=0]

For each ``conf/experiment/<name>.yaml`` (or those named in `--experiments`) the model, tasks,
optimiser and data module are built from the composed config exactly as ``mir.train`` builds
them (``experiment=<name>`` on the default data unless the experiment sets its own), and
`--steps` training steps are run after `--warmup` untimed ones. A step is the computation of
``MirModule.training_step`` plus backward and the optimiser step, written out so each stage can
be timed (the model, losses and optimiser are the ones training uses; nothing is changed):

    data       next batch from the training DataLoader (excerpt cropping, targets, collation)
    frontend   model.frontend(audio): the HCQT (and the STFT when a head reads it)
    trunk      model.trunk(hcqt)
    heads      every head's forward
    loss       every task's masked loss, weighted and summed
    backward   loss.backward()
    optimiser  optimizer.step() and zero_grad()

It reports steps/s and excerpts/s (batch size x steps/s), the mean time of each stage, and the
peak resident memory (CPU; the experiment's own from building its data module on, where Linux
lets the peak be reset, ``/proc/self/clear_refs``; else the whole run's high-water mark,
``ru_maxrss``) or the peak allocated GPU memory (per experiment).

Each precision in `--precisions` (Lightning's ``32``, ``bf16-mixed`` and ``16-mixed``:
autocast, with a ``GradScaler`` for float16) is one timed run, checked for finite losses on its
`--steps` steps; under a mixed precision the HCQT computed under autocast is compared with
float32 (relative Frobenius error, ``hcqt_agrees``: < 1e-3). The JSON holds, per experiment,
``runs: {precision: {...}}``. The default is ``32`` on the CPU and all three on a GPU; the CPU
runs the mixed ones too (CPU autocast), which is how the tests exercise this code without a GPU.

``--trainer gpu`` (NOT MEASURED YET: written for a CUDA machine, never run on one) runs the same
on ``cuda:0`` with a ``torch.cuda.synchronize()`` before each timer, and reports peak GPU memory
and the GPU utilisation sampled by ``nvidia-smi`` during the timed steps instead of the peak
RSS. With the default 5 steps per experiment and precision, the whole GPU pass is sized to take
under 5 minutes.

An experiment whose data is not available here (e.g. a dataset path unset) is listed with the
reason and skipped. The JSON (default ``benchmarks/results/train.json``) is written atomically.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
STAGES = ("data", "frontend", "trunk", "heads", "loss", "backward", "optimiser")
PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
HCQT_TOLERANCE = 1e-3  # relative Frobenius error of the HCQT under autocast against float32


def experiments(selected: str | None) -> list[str]:
    names = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
    if not selected:
        return names
    wanted = [s.strip() for s in selected.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; known: {', '.join(names)}")
    return wanted


def build(name: str, overrides: list[str]) -> tuple[Any, Any, dict[str, Any]]:
    """The experiment's MirModule and bound, set-up data module, as `mir.train.run` builds them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mir.train import instantiate

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "config", overrides=[f"experiment={name}", "output_dir=.", "logger=[]", *overrides]
        )
    module = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)
    datamodule.bind(module.tasks)
    datamodule.setup("fit")
    info = {
        "batch_size": int(cfg.data.batch_size),
        "crop_seconds": float(cfg.data.crop_seconds),
        "tasks": list(module.tasks),
        "params": sum(p.numel() for p in module.parameters()),
        "frontend": OmegaConf.to_container(cfg.frontend, resolve=True),
    }
    return module, datamodule, info


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


class GpuSampler:
    """Samples GPU utilisation (%) with nvidia-smi every 0.2 s while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i"]
        index = str(torch.cuda.current_device())
        while not self._stop.is_set():
            try:
                out = subprocess.run([*cmd, index], capture_output=True, text=True, timeout=5)
                self.samples.append(float(out.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            self._stop.wait(0.2)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def run_steps(
    module: Any,
    datamodule: Any,
    steps: int,
    warmup: int,
    device: torch.device,
    precision: str = "32",
) -> dict[str, Any]:
    """Time `warmup` + `steps` training steps stage by stage (see the module docstring)."""
    model = module.model
    module.to(device).train()
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    dtype = PRECISIONS[precision]
    autocast = (
        (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else nullcontext
    )
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    cuda = device.type == "cuda"

    def now() -> float:
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter()

    times: dict[str, list[float]] = {s: [] for s in STAGES}
    losses: list[float] = []
    loader = iter(datamodule.train_dataloader())
    total_steps = warmup + steps
    wall0 = 0.0
    for i in range(total_steps):
        if i == warmup:
            wall0 = now()
        t0 = now()
        try:
            batch = next(loader)
        except StopIteration:
            loader = iter(datamodule.train_dataloader())
            batch = next(loader)
        batch = _to(batch, device)
        t = {"data": now() - t0}
        with autocast():
            t0 = now()
            hcqt = model.frontend(batch["audio"]) if model.uses_trunk else None
            stft = model.frontend.stft(batch["audio"]) if model.uses_stft else None
            t["frontend"] = now() - t0
            t0 = now()
            trunk = model.trunk(hcqt) if hcqt is not None else None
            t["trunk"] = now() - t0
            from mir.models.features import Features

            feats = Features(audio=batch["audio"], hcqt=hcqt, trunk=trunk, stft=stft)
            t0 = now()
            outputs = {name: head(feats) for name, head in model.heads.items()}
            t["heads"] = now() - t0
            t0 = now()
            total = torch.zeros((), device=device)
            for name, task in module.tasks.items():
                loss = task.loss(outputs[name], batch["targets"][name], batch["mask"][name], feats)
                total = total + task.weight * loss
            t["loss"] = now() - t0
        t0 = now()
        (scaler.scale(total) if scaler else total).backward()
        t["backward"] = now() - t0
        t0 = now()
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        t["optimiser"] = now() - t0
        losses.append(float(total.detach()))
        if i >= warmup:
            for s in STAGES:
                times[s].append(t[s])
    wall = now() - wall0
    batch_size = int(batch["audio"].shape[0])
    return {
        "precision": precision,
        "steps": steps,
        "warmup": warmup,
        "batch_size": batch_size,
        "excerpt_seconds": batch["audio"].shape[-1] / model.frontend.sr,
        "steps_per_s": steps / wall,
        "excerpts_per_s": steps * batch_size / wall,
        "stage_mean_s": {s: statistics.mean(v) for s, v in times.items()},
        "stage_share": {s: sum(v) / wall for s, v in times.items()},
        "losses": losses,
        "finite_losses": all(math.isfinite(v) for v in losses),
    }


def hcqt_agreement(module: Any, datamodule: Any, device: torch.device, dtype: torch.dtype) -> float:
    """Relative Frobenius error of the HCQT under autocast(`dtype`) against float32."""
    batch = _to(next(iter(datamodule.train_dataloader())), device)
    fe = module.model.frontend
    with torch.no_grad():
        ref = fe(batch["audio"]).float()
        with torch.autocast(device.type, dtype=dtype):
            out = fe(batch["audio"]).float()
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


def peak_rss_mib() -> float:
    """Peak resident memory of this process since the last `reset_peak_rss` (Linux: ``VmHWM``
    of ``/proc/self/status``), else since it started (``ru_maxrss``), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def reset_peak_rss() -> bool:
    """Reset the process's peak resident memory to its current one (Linux: ``5`` written to
    ``/proc/self/clear_refs``), so each experiment's peak is its own; False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", default=None, help="comma-separated names (default: all)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per experiment")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    p.add_argument("--trainer", choices=("cpu", "gpu"), default="cpu")
    p.add_argument(
        "--precisions",
        default=None,
        help=f"comma-separated, of {', '.join(PRECISIONS)} (default: 32 on the CPU, all on a GPU)",
    )
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train.json")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every experiment")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    torch.set_num_threads(args.threads)
    if args.trainer == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--trainer gpu: no CUDA device is visible to torch")
    device = torch.device("cuda:0" if args.trainer == "gpu" else "cpu")
    cuda = device.type == "cuda"
    precisions = (args.precisions or (",".join(PRECISIONS) if cuda else "32")).split(",")
    if unknown := [x for x in precisions if x not in PRECISIONS]:
        p.error(f"--precisions: unknown {', '.join(unknown)}; known: {', '.join(PRECISIONS)}")
    from mir.report import write_json

    results: dict[str, Any] = {
        "config": {
            "trainer": args.trainer,
            "steps": args.steps,
            "warmup": args.warmup,
            "threads": args.threads,
            "precisions": precisions,
            "overrides": args.overrides,
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if args.trainer == "gpu" else None,
            "loadavg_before": os.getloadavg(),
        },
        "experiments": {},
    }
    for name in experiments(args.experiments):
        t_start = time.perf_counter()
        own_peak = reset_peak_rss()
        load = os.getloadavg()
        try:
            module, datamodule, info = build(name, args.overrides)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next experiment
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            print(f"{name}: skipped ({reason})")
            results["experiments"][name] = {"skipped": reason}
            continue
        entry: dict[str, Any] = dict(info, loadavg_before=load)
        try:
            entry["runs"] = {}
            for precision in precisions:
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                with GpuSampler() if cuda else nullcontext() as util:
                    r = run_steps(module, datamodule, args.steps, args.warmup, device, precision)
                if cuda:
                    r["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
                    r["gpu_util_percent"] = statistics.mean(util.samples) if util.samples else None
                else:
                    r["peak_rss_mib"] = peak_rss_mib()
                    r["peak_rss_is_this_experiments"] = own_peak  # else the whole run's so far
                if PRECISIONS[precision] is not None:
                    err = hcqt_agreement(module, datamodule, device, PRECISIONS[precision])
                    r["hcqt_rel_error_vs_fp32"] = err
                    r["hcqt_agrees"] = err < HCQT_TOLERANCE
                entry["runs"][precision] = r
                stages = ", ".join(f"{s} {v * 1e3:.0f}" for s, v in r["stage_mean_s"].items())
                memory = (
                    f"peak {r['peak_gpu_mib']:.0f} MiB, util {r['gpu_util_percent']}"
                    if cuda
                    else f"peak RSS {r['peak_rss_mib']:.0f} MiB"
                )
                check = (
                    f"; HCQT error vs float32 {r['hcqt_rel_error_vs_fp32']:.2e}"
                    if "hcqt_rel_error_vs_fp32" in r
                    else ""
                )
                print(
                    f"{name} [{precision}]: {r['steps_per_s']:.3f} steps/s, "
                    f"{r['excerpts_per_s']:.2f} excerpts/s (batch {r['batch_size']} x "
                    f"{r['excerpt_seconds']:.1f} s); ms per step: {stages}; {memory}; "
                    f"finite losses {r['finite_losses']}{check}"
                )
        except Exception as exc:  # noqa: BLE001 - one broken experiment must not stop the rest
            entry["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            print(f"{name}: failed ({entry['error'][:300]})", file=sys.stderr)
        entry["seconds"] = time.perf_counter() - t_start
        results["experiments"][name] = entry
        del module, datamodule
        results["machine"]["loadavg_after"] = os.getloadavg()
        write_json(args.out, results)  # after each experiment, so a cut run keeps its results

    write_json(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
