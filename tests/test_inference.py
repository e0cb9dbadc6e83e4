"""Full-track inference in overlapping chunks equals one pass over the whole track."""

from __future__ import annotations

import numpy as np
import torch
from hydra.utils import instantiate

from mir.inference import infer_track


def test_chunked_equals_whole(compose, tmp_path):
    cfg = compose(["task=[melody,separation,tagging]"], tmp_path)
    module = instantiate(cfg.model).eval()
    fe = module.model.frontend
    rng = np.random.default_rng(0)
    n = int(fe.sr * 9.3)
    t = np.arange(n) / fe.sr
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    kinds = {name: task.output_kind for name, task in module.tasks.items()}
    whole = infer_track(module.model, audio, kinds, chunk_seconds=100.0, margin_seconds=3.0)
    chunked = infer_track(module.model, audio, kinds, chunk_seconds=2.0, margin_seconds=3.0)
    assert whole["melody"].shape == (fe.n_bins, fe.n_frames(n))
    assert whole["separation"].shape[-1] == fe.n_frames(n)
    np.testing.assert_allclose(chunked["melody"], whole["melody"], atol=1e-3)
    # the U-Net pads each chunk to its pooling grid, so masks differ slightly at the seams
    assert np.abs(chunked["separation"] - whole["separation"]).mean() < 1e-2
    n_tags = len(module.tasks["tagging"].tags)
    assert chunked["tagging"].shape == whole["tagging"].shape == (n_tags,)
    with torch.no_grad():
        direct = module.model(torch.from_numpy(audio)[None])[0]["melody"][0].numpy()
    np.testing.assert_allclose(whole["melody"], direct, atol=1e-4)
