"""The shared model: one front end, one trunk, a dict of task heads."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mir.frontend import HarmonicCQT
from mir.models.features import Features


class Head(nn.Module):
    """A task head: maps `Features` to one task's output (B, ...).

    Class attributes (a head may set them per instance):
        uses_trunk: reads the HCQT or the trunk's features, so the model computes them.
        uses_stft: reads the mixture STFT, so the model computes it.
        traceable: `torch.jit.trace` of the head holds at every input length; a head with
            length-dependent Python control flow sets False, and `mir.export` refuses it.
    """

    uses_trunk: bool = True
    uses_stft: bool = False
    traceable: bool = True


class Trunk(nn.Module):
    """The shared trunk: the HCQT (B, H, F, T) -> features (B, C, F, T), C = `out_channels`."""

    out_channels: int


class MultiTaskModel(nn.Module):
    """HCQT front end -> shared trunk -> heads, computed once per batch.

    Args:
        frontend: the Harmonic CQT (and STFT) front end.
        trunk: maps the HCQT (B, H, F, T) to shared features (B, C, F, T).
        heads: task name -> head reading `Features`.
    """

    def __init__(self, frontend: HarmonicCQT, trunk: nn.Module, heads: Mapping[str, Head]):
        super().__init__()
        for name, head in heads.items():
            if not isinstance(head, Head):
                raise TypeError(f"head {name!r}: {type(head).__name__} is not a {Head.__name__}")
        self.frontend = frontend
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)
        self.uses_trunk = any(h.uses_trunk for h in heads.values())
        self.uses_stft = any(h.uses_stft for h in heads.values())

    def features(self, audio: Tensor) -> Features:
        """(B, N) audio -> the shared features the heads read."""
        hcqt = self.frontend(audio) if self.uses_trunk else None
        return Features(
            audio=audio,
            hcqt=hcqt,
            trunk=self.trunk(hcqt) if self.uses_trunk else None,
            stft=self.frontend.stft(audio) if self.uses_stft else None,
        )

    def forward(self, audio: Tensor) -> tuple[dict[str, Tensor], Features]:
        """(B, N) audio -> ({task: output (B, ...)}, features)."""
        feats = self.features(audio)
        return {name: head(feats) for name, head in self.heads.items()}, feats
