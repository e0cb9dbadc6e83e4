"""The shared model: one front end, one trunk, a dict of task heads."""

from __future__ import annotations

from torch import Tensor, nn

from mir.frontend import HarmonicCQT
from mir.models.features import Features


class MultiTaskModel(nn.Module):
    """HCQT front end -> shared trunk -> heads, computed once per batch.

    Args:
        frontend: the Harmonic CQT (and STFT) front end.
        trunk: maps the HCQT (B, H, F, T) to shared features (B, C, F, T).
        heads: task name -> head reading `Features`.
    """

    def __init__(self, frontend: HarmonicCQT, trunk: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.frontend = frontend
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)
        self.uses_trunk = any(getattr(h, "uses_trunk", True) for h in heads.values())
        self.uses_stft = any(getattr(h, "uses_stft", False) for h in heads.values())

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
