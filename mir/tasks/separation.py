"""Source separation by soft masks over the mixture STFT.

After Jansson et al., "Singing Voice Separation with Deep U-Net Convolutional Networks"
(ISMIR 2017).

Conventions:
    * Sources in order `sources` (default ``vocals``, ``accompaniment``), read from
      `Track.stems`; a track is labelled when every source stem exists and is not silent.
    * The STFT is the front end's (`frontend.stft`, same hop as the HCQT); estimates use
      the mixture phase and are inverted with `frontend.istft` to the input length.
    * Loss: L1 between the masked mixture magnitude and each source's magnitude.
    * Evaluation: `mir_eval.separation.bss_eval_sources` on the full track, without
      permutation, giving ``<source>/SDR``, ``/SIR``, ``/SAR`` in dB, plus
      ``<source>/NSDR``: the SDR gain over using the mixture as the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

import mir_eval
import numpy as np
import torch
from torch import Tensor, nn

from mir.data.track import Track
from mir.models.features import Features
from mir.models.heads import MaskUNet
from mir.tasks.base import Task, Window, masked_mean


class SeparationTask(Task):
    """Mask-based separation of `sources` from the mixture.

    Args:
        name: head and metric prefix.
        weight: loss weight.
        sources: stem names to estimate, in order.
        channels: U-Net encoder channels per level.
        dropout_levels: decoder levels with 50 % dropout.
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
    ) -> None:
        super().__init__(name, weight)
        self.sources = tuple(sources)
        self.channels = tuple(int(c) for c in channels)
        self.dropout_levels = int(dropout_levels)
        self.monitor = f"{self.sources[0]}/SDR"

    def build_head(self, trunk_channels: int) -> nn.Module:
        return MaskUNet(len(self.sources), self.channels, self.dropout_levels)

    def stems_needed(self) -> tuple[str, ...]:
        return self.sources

    def has_labels(self, track: Track) -> bool:
        if track.stems is None:
            return False
        return all(s in track.stems and np.any(track.stems[s]) for s in self.sources)

    def targets(self, track: Track, window: Window) -> np.ndarray:
        out = np.zeros((len(self.sources), window.n_samples), dtype=np.float32)
        if not self.has_labels(track):
            return out
        assert track.stems is not None
        a, b = window.start_sample, window.start_sample + window.n_samples
        for i, s in enumerate(self.sources):
            seg = track.stems[s][a:b]
            out[i, : len(seg)] = seg
        return out

    def loss(self, output: Tensor, target: Tensor, mask: Tensor, feats: Features) -> Tensor:
        assert feats.stft is not None
        b, s, n = target.shape
        ref = self.fe.stft(target.reshape(b * s, n)).abs().reshape(b, s, *output.shape[-2:])
        est = output * feats.stft.abs().unsqueeze(1)
        return masked_mean((est - ref).abs().flatten(1).mean(1), mask)

    def decode(self, output: np.ndarray, track: Track) -> np.ndarray:
        """(S, F', T) masks -> (S, N) waveforms at the track's length."""
        x = torch.from_numpy(np.asarray(track.audio, dtype=np.float32))[None]
        with torch.no_grad():
            fe = self.fe
            dev = next((b.device for b in fe.buffers()), torch.device("cpu"))
            spec = fe.stft(x.to(dev)).cpu()  # (1, F', T)
            masks = torch.from_numpy(output).float()
            est = fe.istft((masks * spec).to(dev), length=x.shape[-1]).cpu()  # (S, N)
        return est.numpy().astype(np.float32)

    def evaluate_track(self, track: Track, estimate: np.ndarray) -> dict[str, float]:
        assert track.stems is not None
        ref = np.stack([track.stems[s] for s in self.sources]).astype(np.float64)
        n = ref.shape[1]
        est = np.asarray(estimate, dtype=np.float64)[:, :n]
        sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(ref, est, False)
        mix = np.repeat(np.asarray(track.audio, np.float64)[None, :n], len(self.sources), 0)
        sdr_mix, _, _, _ = mir_eval.separation.bss_eval_sources(ref, mix, False)
        out = {}
        for i, s in enumerate(self.sources):
            out[f"{s}/SDR"] = float(sdr[i])
            out[f"{s}/SIR"] = float(sir[i])
            out[f"{s}/SAR"] = float(sar[i])
            out[f"{s}/NSDR"] = float(sdr[i] - sdr_mix[i])
        return out

    def baseline(self, track: Track) -> np.ndarray:
        return np.repeat(np.asarray(track.audio, np.float32)[None], len(self.sources), 0)
