"""Export a trained model as one TorchScript file: audio in, every head's raw output out.

Usage:
    python -m mir.export ckpt=<path> [output=<file.pt>] [onnx=false]

Arguments (``key=value``: a Hydra app like ``mir.train``, configured by ``conf/export.yaml``):
    ckpt: checkpoint written by ``mir.train``.
    output: TorchScript file to write (default: the checkpoint's path with ``.pt``).
    onnx: also try an ONNX export beside it (``<output stem>.onnx``); see below.

The exported module maps (B, N) mono float audio at the model's sample rate to a tuple of
raw head outputs (logits or masks, before each task's `decode`), in the order of the
``tasks`` list stored in the file's ``mir_export.json`` extra file (and written beside it
as ``<output>.json``, with the grid, each task's labels and the output shapes)::

    meta = {"mir_export.json": ""}
    model = torch.jit.load("model.pt", _extra_files=meta)
    tasks = json.loads(meta["mir_export.json"])["tasks"]
    outputs = dict(zip(tasks, model(audio)))

How: `torch.jit.trace` records tensor operations for one example input, but the HCQT
front end builds its FFT kernels in Python (numpy) for each input length, so a plain trace
only works at the traced length. The HCQT's power is therefore `ScriptedHCQTPower`, a
`torch.jit.script` port of the front end's block layout that builds the kernels in-graph
for whatever length comes in (calling the front end's own kernel formula); the rest of the
model (log scaling, trunk, STFT, heads) is traced. Before writing, the export is checked
against the eager model on two lengths other than the traced one (max abs difference
<= 1e-4); the difference is stored as ``checked_max_abs_diff``. Kernels are rebuilt on
every call (the eager front end caches them), so the export is somewhat slower.

ONNX: the front end needs complex FFTs (``torch.fft.rfft``/``ifft``, ``torch.stft``) and
complex tensors, which the ONNX exporter does not support; ``onnx=true`` reports that
failure (and the exporter's reason) instead of writing a file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mir.errors import ConfigError, MirError
from mir.frontend import _hann_kernel_spectrum

log = logging.getLogger("mir.export")

CHECK_ATOL = 1e-4


def _next_smooth(n: int) -> int:
    """`mir.frontend._next_smooth` in TorchScript: smallest even 2,3,5-smooth integer >= n."""
    n = max(n, 2)
    found = False
    while not found:
        m = n
        for p in [2, 3, 5]:
            while m % p == 0:
                m = m // p
        if m == 1 and n % 2 == 0:
            found = True
        else:
            n += 1
    return n


class ScriptedHCQTPower(nn.Module):
    """`HarmonicCQT._power_fft` as TorchScript: |CQT|^2 of the computed bins, any length.

    The eager front end builds its kernel spectra in Python (numpy) for each block length
    and caches them, which `torch.jit.trace` would freeze at the traced length. This module
    computes the same block layout and kernels in TorchScript from the front end's bin
    tables on every call (no cache), calling the front end's own kernel formula
    (`_hann_kernel_spectrum`), so the result matches the eager front end at any length.

    Args:
        frontend: a `HarmonicCQT` with the ``fft`` backend.
    """

    def __init__(self, frontend: Any) -> None:
        super().__init__()
        layout = frontend.block_layout()  # public tables, already in group order
        self.hop = int(layout.hop)
        self.sr = float(layout.sr)
        self.margin = int(layout.margin)
        self.half_kernel = int(layout.half_kernel)
        self.n_bins = int(sum(layout.group_sizes))
        self.max_block_frames = int(layout.max_block_frames)
        self.band_half_width = float(layout.band_half_width)
        self.double = layout.dtype == torch.float64
        self.sizes = list(layout.group_sizes)
        for name, table in (("freqs", layout.freqs), ("taps", layout.taps), ("gain", layout.gain)):
            self.register_buffer(name, torch.as_tensor(table, dtype=torch.float64))  # (K,)

    def forward(self, audio: Tensor) -> Tensor:
        """(B, N) audio -> (B, K, T) power of the computed bins, T = 1 + N // hop."""
        audio = audio.to(torch.float64 if self.double else torch.float32)
        b = audio.size(0)
        n_samples = audio.size(1)
        t = 1 + n_samples // self.hop
        need = (n_samples + self.half_kernel + self.hop - 1) // self.hop
        if need <= self.max_block_frames:
            return self._union_power(audio, _next_smooth(need), t)
        d = self.margin
        m = _next_smooth(max(self.max_block_frames, 4 * d))
        step = m - 2 * d
        n_blocks = (t + step - 1) // step
        total = (n_blocks * step + 2 * d) * self.hop
        padded = F.pad(audio, [d * self.hop, total - d * self.hop - n_samples])
        blocks = padded.unfold(-1, m * self.hop, step * self.hop)  # (B, n_blocks, M * hop)
        power = self._union_power(blocks.reshape(b * n_blocks, m * self.hop), m, m)
        power = power[:, :, d : d + step].reshape(b, n_blocks, self.n_bins, step)
        return power.transpose(1, 2).reshape(b, self.n_bins, n_blocks * step)[:, :, :t]

    def _union_power(self, x: Tensor, m: int, t: int) -> Tensor:
        """(B, N) blocks, N <= m * hop -> (B, K, t) power; kernels for block length m."""
        n = m * self.hop
        n_r = n // 2 + 1
        # Layout of each group's band, as `HarmonicCQT._block_kernels`.
        starts: list[int] = []
        steps: list[int] = []
        widths: list[int] = []
        k0 = 0
        for k_g in self.sizes:
            centre = self.freqs[k0 : k0 + k_g] * n / self.sr
            half = self.band_half_width * n / self.taps[k0 : k0 + k_g]
            j = torch.arange(k_g, dtype=torch.float64, device=x.device)
            span = float((centre[-1] - centre[0]).item()) / max(k_g - 1, 1)
            step = max(1, int(round(span)))
            start = int(math.floor(float((centre - half - j * step).min().item())))
            width = int(math.ceil(float((centre + half - (start + j * step)).max().item())))
            if width > m:
                padded = ((width + m - 1) // m) * m
            else:
                padded = ((width + 7) // 8) * 8
            padded = min(padded, n)
            start -= (padded - width) // 2
            starts.append(start)
            steps.append(step)
            widths.append(padded)
            k0 += k_g
        lo = max(0, -min(starts))
        hi = 0
        for i in range(len(starts)):
            hi = max(hi, starts[i] + (self.sizes[i] - 1) * steps[i] + widths[i] - n_r)
        if lo >= n_r - 1 or hi >= n_r - 2:
            raise ValueError("HarmonicCQT: kernel bands wider than the spectrum; block too short")

        spec = torch.fft.rfft(x, n=n)  # (B, n // 2 + 1)
        parts: list[Tensor] = []
        if lo > 0:  # negative frequencies: X(-v) = conj X(v)
            parts.append(spec[:, 1 : lo + 1].flip(-1).conj().resolve_conj())
        parts.append(spec)
        if hi > 0:  # above Nyquist: X(n - v) = conj X(v)
            parts.append(spec[:, n - n_r - hi + 1 : n - n_r + 1].flip(-1).conj().resolve_conj())
        ext = torch.cat(parts, dim=-1)  # (B, N_ext)
        folded = torch.zeros([ext.size(0), self.n_bins, m], dtype=ext.dtype, device=ext.device)
        k0 = 0
        for i in range(len(starts)):
            k_g = self.sizes[i]
            width = widths[i]
            start = starts[i]
            step = steps[i]
            nu = (start + step * torch.arange(k_g, dtype=torch.float64, device=x.device))[
                :, None
            ] + torch.arange(width, dtype=torch.float64, device=x.device)  # (K_g, W)
            omega = 2 * math.pi * self.freqs[k0 : k0 + k_g] / self.sr
            taps = self.taps[k0 : k0 + k_g][:, None]
            theta = 2 * math.pi * nu / n - omega[:, None]
            kernel = _hann_kernel_spectrum(theta, taps)
            kernel = (kernel * (self.gain[k0 : k0 + k_g][:, None] / self.hop)).to(ext.dtype)
            band = ext[:, start + lo :].unfold(-1, width, step)[:, :k_g].contiguous()
            if width > m:  # sampling every hop folds the band modulo M
                band = band.reshape(band.size(0), k_g, width // m, m)  # (B, K_g, R, M)
                folded[:, k0 : k0 + k_g] = (band * kernel.reshape(k_g, width // m, m)).sum(2)
            else:
                folded[:, k0 : k0 + k_g, :width] = band * kernel
            k0 += k_g
        frames = torch.fft.ifft(folded, dim=-1)[:, :, :t]  # (B, K, T)
        return frames.real.square() + frames.imag.square()


class ExportModel(nn.Module):
    """The shared model as one call: (B, N) audio -> tuple of head outputs in `tasks` order.

    Args:
        model: the trained `MultiTaskModel`.
        scripted_frontend: compute the HCQT with `ScriptedHCQTPower` (any length once
            traced); False calls the eager front end (for exporters that trace once).
    """

    def __init__(self, model: Any, scripted_frontend: bool = True) -> None:
        super().__init__()
        self.frontend = model.frontend
        self.trunk = model.trunk
        self.heads = model.heads
        self.tasks = list(model.heads)
        self.uses_trunk = bool(model.uses_trunk)
        self.uses_stft = bool(model.uses_stft)
        fe = model.frontend
        self.power = (
            torch.jit.script(ScriptedHCQTPower(fe))
            if scripted_frontend and self.uses_trunk and fe.backend == "fft"
            else None
        )

    def hcqt(self, audio: Tensor) -> Tensor:
        """(B, N) -> (B, H, F, T), as `HarmonicCQT.forward`."""
        fe = self.frontend
        if self.power is None:
            return fe(audio)
        return fe.from_power(self.power(audio))  # (B, K, T) -> (B, H, F, T)

    def forward(self, audio: Tensor) -> tuple[Tensor, ...]:
        from mir.models.features import Features

        hcqt = self.hcqt(audio) if self.uses_trunk else None
        feats = Features(
            audio=audio,
            hcqt=hcqt,
            trunk=self.trunk(hcqt) if hcqt is not None else None,
            stft=self.frontend.stft(audio) if self.uses_stft else None,
        )
        return tuple(self.heads[name](feats) for name in self.tasks)


def metadata(module: Any) -> dict[str, Any]:
    """What a user of the exported file needs: task order, grid, labels, output shapes."""
    fe = module.model.frontend
    tasks: dict[str, Any] = {}
    for name, task in module.tasks.items():
        info: dict[str, Any] = {"class": type(task).__name__, "output": task.output_kind}
        info["shape"] = task.output_shape()
        info.update(task.export_labels())
        tasks[name] = info
    return {
        "format": "mir TorchScript export 1",
        "tasks": list(module.model.heads),
        "input": "(B, N) mono float32 audio at sample_rate; T = 1 + N // hop frames",
        "sample_rate": fe.sr,
        "hop": fe.hop,
        "frame_times": "frame t is centred at t * hop / sample_rate s",
        "fmin": fe.fmin,
        "bins_per_octave": fe.bins_per_octave,
        "n_bins": fe.n_bins,
        "harmonics": list(fe.harmonics),
        "n_fft": fe.n_fft,
        "task_info": tasks,
        "frontend_config": (module.run_config or {}).get("frontend"),
    }


def export(
    module: Any, check_seconds: Sequence[float] = (1.3, 2.9)
) -> tuple[torch.jit.ScriptModule, dict[str, Any], float]:
    """Trace `module.model` into TorchScript and check it against eager on other lengths.

    Returns:
        The TorchScript module, its metadata, and the largest absolute difference from the
        eager model over the check inputs.

    Raises:
        MirError: the traced model disagrees with the eager one (by more than 1e-4).
    """
    model = module.model.eval()
    fe = model.frontend
    untraceable = [n for n, h in model.heads.items() if not h.traceable]
    if untraceable:
        names = ", ".join(f"{n} ({type(model.heads[n]).__name__})" for n in untraceable)
        raise MirError(
            f"cannot export to TorchScript: head {names} has length-dependent Python control "
            "flow; use the checkpoint with mir.predict instead"
        )
    wrapper = ExportModel(model).eval()
    gen = torch.Generator().manual_seed(0)
    example = 0.1 * torch.randn(1, int(2.0 * fe.sr), generator=gen)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about constant shapes are checked below
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    worst = check(traced, model, [int(s * fe.sr) for s in check_seconds], batch=2)
    if worst > CHECK_ATOL:
        raise MirError(
            f"export check failed: TorchScript output differs from the eager model by {worst:.2e}"
            f" (> {CHECK_ATOL}); the file was not written"
        )
    meta = metadata(module)
    return traced, meta, worst


def check(scripted: Any, model: Any, lengths: Sequence[int], batch: int = 1) -> float:
    """Largest absolute difference between `scripted` and the eager `model` on random audio."""
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    names = list(model.heads)
    with torch.no_grad():
        for n in lengths:
            x = 0.1 * torch.randn(batch, int(n), generator=gen)
            eager, _ = model(x)
            got = scripted(x)
            for name, y in zip(names, got, strict=True):
                if y.shape != eager[name].shape:
                    return math.inf
                worst = max(worst, float((y - eager[name]).abs().max()))
    return worst


def export_onnx(wrapper: nn.Module, example: Tensor, path: Path, names: list[str]) -> str:
    """Try an ONNX export; returns a one-line reason when the ops do not allow it."""
    from mir.audio import atomic_write

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                tmp,
                input_names=["audio"],
                output_names=names,
                dynamic_axes={"audio": {0: "batch", 1: "samples"}},
                opset_version=17,
                dynamo=False,
            )

    try:
        with _quiet_fds():  # the exporter dumps the whole graph to fd 2 when it fails
            atomic_write(path, write, suffix=".onnx")
    except Exception as exc:  # the exporter raises many types for unsupported ops
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{type(exc).__name__}: {reason[:300]}"
    return ""


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Send C-level stdout/stderr to /dev/null for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def default_output(ckpt: str) -> Path:
    """The checkpoint's path with ``.pt``; ``<name>.pt`` here for ``pretrained:<dir>/<name>``."""
    from mir.checkpoint import PRETRAINED

    if str(ckpt).startswith(PRETRAINED):
        return Path(str(ckpt)[len(PRETRAINED) :].rsplit("/", 1)[-1] + ".pt")
    return Path(ckpt).with_suffix(".pt")


def run(ckpt: str, output: str | None = None, onnx: bool = False):
    """Export `ckpt`; returns (TorchScript path, ONNX path or None, ONNX failure reason)."""
    from mir.audio import atomic_write
    from mir.checkpoint import checkpoint_file, load_module
    from mir.predict import as_bool, check_writable_dir

    if not ckpt:
        raise ConfigError("no checkpoint given: use ckpt=<path to .ckpt>")
    # the destination is checked before the model is loaded and traced
    onnx = as_bool(onnx, "onnx")
    source = checkpoint_file(ckpt)
    out = Path(output) if output else default_output(ckpt)
    if out.is_dir():
        raise ConfigError(f"output {out} is a folder; give a file name (model.pt)")
    for target in (out, out.with_name(out.name + ".json"), out.with_suffix(".onnx")):
        if target.resolve() == source.resolve():
            raise ConfigError(f"output {target} would overwrite the checkpoint {ckpt}")
    check_writable_dir(out.parent, "output folder")
    module, _ = load_module(ckpt, map_location="cpu")
    traced, meta, worst = export(module)
    meta["checked_max_abs_diff"] = worst
    text = json.dumps(meta, indent=2, default=str)
    extra = {"mir_export.json": text}
    atomic_write(out, lambda tmp: torch.jit.save(traced, tmp, _extra_files=extra))
    atomic_write(out.with_name(out.name + ".json"), lambda tmp: Path(tmp).write_text(text + "\n"))
    onnx_path, reason = None, ""
    if onnx:
        fe = module.model.frontend
        wrapper = ExportModel(module.model.eval(), scripted_frontend=False).eval()
        example = 0.1 * torch.randn(1, int(2.0 * fe.sr))
        onnx_path = out.with_suffix(".onnx")
        reason = export_onnx(wrapper, example, onnx_path, meta["tasks"])
        if reason:
            onnx_path = None
    return out, onnx_path, reason


def main(argv: Sequence[str] | None = None) -> int:
    from mir.predict import as_bool, hydra_app

    def body(cfg: Any) -> int:
        onnx = as_bool(cfg.onnx, "onnx")
        out, onnx_path, reason = run(cfg.ckpt, cfg.output, onnx)
        print(f"mir.export: TorchScript written to {out} (task order and metadata in {out}.json)")
        if not onnx:
            return 0
        if onnx_path is not None:
            print(f"mir.export: ONNX written to {onnx_path}")
            return 0
        print(
            "mir.export: ONNX export is not supported for this model (the front end uses "
            f"complex FFTs); no .onnx written. Exporter said: {reason}",
            file=sys.stderr,
        )
        return 3

    return hydra_app(argv, "export", body)


if __name__ == "__main__":
    sys.exit(main())
