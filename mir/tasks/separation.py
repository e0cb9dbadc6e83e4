"""Source separation by soft masks over the mixture STFT.

After Jansson et al., "Singing Voice Separation with Deep U-Net Convolutional Networks"
(ISMIR 2017).

Conventions:
    * Sources in order `sources` (default ``vocals``, ``accompaniment``), read from
      the ``stems`` annotation; a track is labelled when every source stem exists and is not silent.
    * The STFT is the front end's (`frontend.stft`, same hop as the HCQT); estimates use
      the mixture phase and are inverted with `frontend.istft` to the input length.
    * Loss: L1 between the masked mixture magnitude and each source's magnitude.
    * Evaluation, on the full track at the front end's rate (mono downmix), without
      permutation, in dB:
        - `mir_eval.separation.bss_eval_sources` (BSSEval v3): ``<source>/SDR``, ``/SIR``,
          ``/SAR``, plus ``<source>/NSDR``: the SDR gain over using the mixture as the
          estimate;
        - ``<source>/SI-SDR``: scale-invariant SDR (Le Roux et al., "SDR - half-baked or
          well done?", ICASSP 2019; zero-mean), and ``<source>/SI-SDRi``: its gain over
          the mixture as the estimate (`mir.bsseval.si_sdr`);
        - with ``museval=True`` (slower), ``<source>/museval-SDR``, ``-SIR``, ``-ISR``,
          ``-SAR``: BSSEval v4 as museval and SiSEC 2018 compute it (time-invariant
          512-tap filters, 1-s frames and hops, median over the frames where no reference
          or estimate is silent; `mir.bsseval.museval_scores`). On a mono signal these
          are not comparable with SiSEC's stereo 44.1-kHz numbers.
    * With ``unet`` set (``model=unet_jansson``, ``experiment=jansson_unet``), the head is the
      published U-Net (`mir.models.unet.JanssonUNet`): its own 8192-Hz STFT (window 1024,
      hop 768, 512 bins), patches of 128 frames normalised to [0, 1], and the L1 loss on
      that STFT, scaled by the mixture's maximum magnitude in the excerpt; its masks are held
      on the front end's frames (S, 512, T) and reconstructed ``fullband`` (interpolated onto
      the front end's STFT) or as in the ``paper`` (8192-Hz STFT, band-limited to 4096 Hz).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mir_eval
import numpy as np
import torch
from torch import Tensor

from mir.bsseval import museval_scores, si_sdr
from mir.data.track import Track
from mir.errors import ConfigError
from mir.grid import Window
from mir.models.features import Features
from mir.models.heads import MaskUNet
from mir.models.model import Head
from mir.models.unet import JanssonUNet, masked_istft_blocks
from mir.tasks.base import Expectations, OutputContext, Task, masked_mean


class SeparationTask(Task):
    """Mask-based separation of `sources` from the mixture.

    Args:
        name: head and metric prefix.
        weight: loss weight.
        sources: stem names to estimate, in order.
        channels: U-Net encoder channels per level (the default `MaskUNet` head).
        dropout_levels: decoder levels with 50 % dropout (the default `MaskUNet` head).
        unet: partial constructor of `mir.models.unet.JanssonUNet` (called with
            ``n_sources``, ``frontend`` and ``trunk_channels``); replaces the default head,
            and `channels` / `dropout_levels` are then unused.
        museval: also score each track with BSSEval v4 (``<source>/museval-SDR``, ...);
            adds about a third to the evaluation time.
    """

    target_kind = "samples"
    monitor = "vocals/SDR"

    def __init__(
        self,
        name: str = "separation",
        weight: float = 1.0,
        sources: Sequence[str] = ("vocals", "accompaniment"),
        channels: Sequence[int] = (16, 32, 64, 128),
        dropout_levels: int = 0,
        unet: Callable[..., JanssonUNet] | None = None,
        museval: bool = False,
    ) -> None:
        super().__init__(name, weight)
        self.sources = tuple(sources)
        self.channels = tuple(int(c) for c in channels)
        self.dropout_levels = int(dropout_levels)
        self.monitor = f"{self.sources[0]}/SDR"
        self.unet_factory = unet
        self.unet: JanssonUNet | None = None  # the built Jansson head, read by loss/decode
        self.museval = bool(museval)

    def build_head(self, trunk_channels: int) -> Head:
        if self.unet_factory is None:
            return MaskUNet(len(self.sources), self.channels, self.dropout_levels)
        self.unet = self.unet_factory(
            n_sources=len(self.sources), frontend=self.fe, trunk_channels=trunk_channels
        )
        return self.unet

    @property
    def min_crop_seconds(self) -> float:
        """Shortest training excerpt, in s, that fills one U-Net patch (0: no minimum)."""
        if self.unet is None:
            return 0.0
        # one front-end hop more than a patch, so the excerpt's 8192-Hz STFT has the frames
        return self.unet.min_seconds + 2 * self.grid.hop / self.grid.sr

    def stems_needed(self) -> tuple[str, ...]:
        return self.sources

    def has_labels(self, track: Track) -> bool:
        stems = track.get("stems", {})
        return all(s in stems and np.any(stems[s]) for s in self.sources)

    def skip_reason(self, track: Track) -> str | None:
        if self.has_labels(track):
            return None
        stems = track.get("stems")
        if stems is None:
            return "no stems"
        missing = [s for s in self.sources if s not in stems]
        if missing:
            return f"no {', '.join(missing)} stem"
        silent = [s for s in self.sources if not np.any(stems[s])]
        what = " (instrumental track)" if silent == ["vocals"] else ""
        return f"{', '.join(silent)} stem silent{what}"

    def targets(self, track: Track, window: Window) -> np.ndarray:
        out = np.zeros((len(self.sources), window.n_samples), dtype=np.float32)
        if not self.has_labels(track):
            return out
        stems = track.get("stems")
        a, b = window.start_sample, window.start_sample + window.n_samples
        for i, s in enumerate(self.sources):
            seg = stems[s][a:b]
            out[i, : len(seg)] = seg
        return out

    def loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        if self.unet is not None:
            return self._unet_loss(output, target, mask, feats)
        assert feats.stft is not None
        b, s, n = target.shape
        ref = self.fe.stft(target.reshape(b * s, n)).abs().reshape(b, s, *output.shape[-2:])
        est = output * feats.stft.abs().unsqueeze(1)
        return masked_mean((est - ref).abs().flatten(1).mean(1), mask)

    def _unet_loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        """Jansson et al.'s L1 loss on the 8192-Hz STFT, per excerpt scaled by the mixture's
        maximum magnitude (the [0, 1] normalisation of the input)."""
        assert self.unet is not None
        b, s, n = target.shape
        masks = self.unet.paper_masks(output, n)  # (B, S, F8, T8)
        with torch.no_grad():
            mix = self.unet.magnitude(feats.audio)  # (B, F8, T8)
            ref = self.unet.magnitude(target.reshape(b * s, n)).reshape(b, s, *mix.shape[1:])
            scale = mix.flatten(1).amax(1).clamp_min(1e-8)[:, None, None, None]  # (B,1,1,1)
        est = masks * mix.unsqueeze(1)
        return masked_mean(((est - ref).abs() / scale).flatten(1).mean(1), mask)

    def stft_masks(self, output: np.ndarray, n_samples: int) -> np.ndarray:
        """Raw full-track output -> (S, F', T) masks on the front end's STFT grid.

        The default head's output already is; the Jansson head's (S, 512, T) masks are
        interpolated onto it (`JanssonUNet.stft_masks`).
        """
        if self.unet is None:
            return output
        with torch.no_grad():
            held = torch.from_numpy(np.asarray(output, dtype=np.float32))
            return self.unet.stft_masks(held, n_samples).numpy()

    def decode(self, output: np.ndarray, track: Track) -> np.ndarray:
        """Raw full-track output -> (S, N) waveforms at the track's length."""
        return self.separate(output, np.asarray(track.audio, dtype=np.float32))

    def separate(self, output: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """Apply one raw full-track output to (N,) audio -> (S, N) float32 waveforms.

        `audio` may be any channel of the input the output was computed from (its phase is
        used), which is how `mir.predict` keeps a stereo input's image.
        """
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        with torch.no_grad():
            fe = self.fe
            dev = next((b.device for b in fe.buffers()), torch.device("cpu"))
            if self.unet is not None:
                held = torch.from_numpy(np.asarray(output, dtype=np.float32)).to(dev)
                est = self.unet.separate(held, x.to(dev), fe).cpu()
                return est.numpy().astype(np.float32)
            masks = torch.from_numpy(np.asarray(output, dtype=np.float32)).to(dev)  # (S, F', T)
            est = masked_istft_blocks(
                fe, x.to(dev), lambda a, b: masks[..., a:b], masks.shape[0]
            ).cpu()  # (S, N), a block of frames at a time: bounded memory
        return est.numpy().astype(np.float32)

    def evaluate_track(self, track: Track, estimate: np.ndarray) -> dict[str, float]:
        stems = track.get("stems")
        ref = np.stack([stems[s] for s in self.sources]).astype(np.float64)
        n = ref.shape[1]
        est = np.asarray(estimate, dtype=np.float64)[:, :n]
        sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(ref, est, False)
        mix = np.repeat(np.asarray(track.audio, np.float64)[None, :n], len(self.sources), 0)
        sdr_mix, _, _, _ = mir_eval.separation.bss_eval_sources(ref, mix, False)
        si = si_sdr(ref, est)
        si_mix = si_sdr(ref, mix)
        v4 = museval_scores(ref, est, track.sr) if self.museval else {}
        out = {}
        for i, s in enumerate(self.sources):
            out[f"{s}/SDR"] = float(sdr[i])
            out[f"{s}/SIR"] = float(sir[i])
            out[f"{s}/SAR"] = float(sar[i])
            out[f"{s}/NSDR"] = float(sdr[i] - sdr_mix[i])
            out[f"{s}/SI-SDR"] = float(si[i])
            out[f"{s}/SI-SDRi"] = float(si[i] - si_mix[i])
            for m in ("SDR", "SIR", "ISR", "SAR"):
                if m in v4:
                    out[f"{s}/museval-{m}"] = float(v4[m][i])
        return out

    def baseline(self, track: Track) -> np.ndarray:
        return np.repeat(np.asarray(track.audio, np.float32)[None], len(self.sources), 0)

    # -- outputs ------------------------------------------------------------------------
    decode_reads_audio = True

    def expectations(self) -> Expectations:
        keys = {f"{self.sources[0]}/{m}" for m in ("SDR", "SIR", "SAR", "NSDR", "SI-SDR")}
        keys |= {f"{self.sources[0]}/SI-SDRi"} | {f"{s}/SDR" for s in self.sources}
        return Expectations(keys=frozenset(keys), metric=self.monitor)

    def write_outputs(self, ctx: OutputContext, estimate: Any) -> list[Any]:
        """``<source>.wav`` per source at the input's rate, length and channels: each
        channel of the input (``ctx.channels``) masked with the raw output and inverted
        with its own phase (`mir.predict.separate_channels`). No JAMS annotation."""
        from mir.audio import fit_length, resample
        from mir.outputs import write_stems
        from mir.predict import separate_channels

        stems = separate_channels(self, ctx.raw[self.name], ctx.channels)  # (S, C, N')
        sr_model = self.grid.sr
        if ctx.sr_in != sr_model:
            stems = np.stack([resample(s, sr_model, ctx.sr_in) for s in stems])
        stems = fit_length(stems, ctx.n_in)
        if stems.shape[1] == 1:
            stems = stems[:, 0]  # (S, N): a mono input gives mono stems
        write_stems(ctx.out_dir, self.sources, stems, ctx.sr_in)
        return []

    def figure(self, track: Track, output: np.ndarray, n_frames: int) -> Any:
        """Each source's soft mask (S, F', T) over the STFT bins."""
        from mir.callbacks import axes_figure, time_extent

        fig, axes = axes_figure(len(self.sources))
        for ax, src, mask in zip(axes, self.sources, output[..., :n_frames], strict=True):
            ax.imshow(
                mask,
                origin="lower",
                aspect="auto",
                vmin=0,
                vmax=1,
                extent=time_extent(self.grid, n_frames, mask.shape[0]),
            )
            ax.set(title=f"{self.name}: {src} mask", ylabel="STFT bin")
        axes[-1].set_xlabel("time (s)")
        return fig

    def media_audio(self, track: Track, output: np.ndarray) -> list[tuple[str, np.ndarray]]:
        stems = self.decode(np.asarray(output, np.float32), track)  # (S, N)
        return [(f"estimated {src}", stems[i]) for i, src in enumerate(self.sources)]

    def output_shape(self) -> str:
        return "(B, S, n_fft // 2 + 1, T) masks in [0, 1] over the STFT"

    def export_labels(self) -> dict[str, Any]:
        return {"sources": list(self.sources)}


def requires_separation_task(**kwargs: Any) -> None:
    """Stand-in `_target_` that `conf/model/unet_jansson.yaml` gives ``task.separation``:
    `conf/task/separation.yaml` replaces it when the separation task is selected, so this
    runs only when it is not.

    Raises:
        ConfigError: always, naming the fix.
    """
    raise ConfigError(
        "model=unet_jansson configures the separation head, but the separation task is not "
        "selected; use task=separation or task=[separation,...] (or experiment=jansson_unet)"
    )
