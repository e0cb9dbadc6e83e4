"""The int8 fast path (`inference_model(model, torch.qint8)`): close to float32, same decoded f0s.

Tolerances (measured on this CPU with torch's x86 engine, stated in each test): int8 rounds every
convolution's input and output to 8 bits, so the logits differ from float32's by about 1 % of
their range, not by float rounding as the float32 fast path does (tests/test_fused.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import mir.models.fused as fused
from mir.errors import ConfigError
from mir.frontend import HarmonicCQT
from mir.inference import infer_track
from mir.models.fused import (
    Int8Chain,
    calibration_audio,
    inference_model,
    relu_scales_into_convs,
)
from mir.models.heads import SalienceHead
from mir.models.layers import ConvTrunk
from mir.models.model import MultiTaskModel
from tests.test_fused import randomise_batch_norms

pytestmark = pytest.mark.skipif(
    not any(e in torch.backends.quantized.supported_engines for e in fused.INT8_ENGINES),
    reason="this torch has no x86/fbgemm/onednn quantized engine",
)


def tiny_model(layout: str = "mir") -> MultiTaskModel:
    """Two salience heads on a small HCQT (48 bins); kernels long enough to fold."""
    torch.manual_seed(0)
    fe = HarmonicCQT(bins_per_octave=12, n_octaves=4, fmin=65.4, harmonics=(0.5, 1, 2, 3))
    trunk = ConvTrunk(fe.n_harmonics, channels=(8, 8), kernels=((5, 5), (3, 3)), layout=layout)
    hidden = 8 if layout == "mir" else 0
    heads: dict[str, nn.Module] = {
        name: SalienceHead(
            8, hidden=hidden, wide_channels=4, freq_kernel=13, time_kernel=3, layout=layout
        )
        for name in ("melody", "bass")
    }
    model = MultiTaskModel(fe, trunk, heads)
    randomise_batch_norms(model)
    return model.eval()


def tones(sr: int, seconds: float, seed: int) -> torch.Tensor:
    """Test audio: the calibration generator with another seed (not the calibration audio)."""
    return calibration_audio(sr, seconds, seed=seed)


@pytest.mark.parametrize("layout", ["mir", "keras"])
def test_int8_logits_close_to_float32(layout: str) -> None:
    model = tiny_model(layout)
    x = tones(model.frontend.sr, 6.0, seed=1)[None]
    with torch.no_grad():
        ref = model(x)[0]
        q = inference_model(model, torch.qint8)
        out = q(x)[0]
    n_int8 = sum(
        type(m).__name__ == "ConvReLU2d" and "quantized" in type(m).__module__ for m in q.modules()
    )
    assert n_int8 >= 3  # trunk convs and heads' first layers really are int8
    for name in ref:
        assert out[name].dtype == torch.float32
        scale = float(ref[name].abs().max())
        err = float((out[name] - ref[name]).abs().max()) / scale
        # 8-bit rounding: not float32's ~1e-7, but within 5 % of the range [measured 0.3-1 %]
        assert 1e-5 < err < 0.05, (name, err)


def test_int8_decoded_f0_agrees_with_float32() -> None:
    """Per frame, the most salient bin of the int8 logits is the float32 one (or a neighbour)."""
    model = tiny_model()
    audio = tones(model.frontend.sr, 8.0, seed=2).numpy()
    kinds = {"melody": "frames", "bass": "frames"}
    ref = infer_track(model, audio, kinds, 3.0, 1.0, fast=False)
    out = infer_track(model, audio, kinds, 3.0, 1.0, dtype=torch.qint8)
    for name in kinds:
        a, b = ref[name].argmax(0), out[name].argmax(0)
        assert a.shape == b.shape
        # [measured: all 690 frames equal]
        assert np.mean(a == b) > 0.9, name
        assert np.mean(np.abs(a - b) <= 1) > 0.97, name


def test_int8_needs_an_x86_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    monkeypatch.setattr(fused, "_supported_engines", lambda: ["qnnpack", "none"])
    with pytest.raises(ConfigError, match="int8 inference needs one of .*x86.*has qnnpack"):
        inference_model(model, torch.qint8)
    assert isinstance(inference_model(model), nn.Module)  # float32 still works


def test_int8_copy_is_cached_until_the_weights_change() -> None:
    model = tiny_model()
    q = inference_model(model, torch.qint8)
    assert inference_model(model, torch.qint8) is q
    with torch.no_grad():
        next(model.trunk.parameters()).mul_(1.5)
    assert inference_model(model, torch.qint8) is not q


def test_calibration_changes_the_ranges() -> None:
    model = tiny_model()
    noise = 0.1 * torch.randn(4 * model.frontend.sr, generator=torch.Generator().manual_seed(0))

    def scales(q: nn.Module) -> list[float]:  # output scales of the int8 convolutions
        return [float(m.scale) for m in q.modules() if type(m).__name__ == "ConvReLU2d"]

    a = scales(fused.InferenceModel(model, torch.qint8))
    b = scales(fused.InferenceModel(model, torch.qint8, calibration=noise))
    assert len(a) >= 3
    assert len(a) == len(b)
    assert a != b


def test_relu_scales_into_convs_keeps_outputs() -> None:
    seq = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(5))
    randomise_batch_norms(seq)
    with torch.no_grad():
        seq[2].weight[1] = -0.7  # a negative scale stays in the batch norm
    seq.eval()
    x = torch.randn(2, 3, 11, 7)
    with torch.no_grad():
        ref = seq(x)
        moved = relu_scales_into_convs(copy.deepcopy(seq))
        torch.testing.assert_close(moved(x), ref, rtol=1e-5, atol=1e-5)
        scale = moved[2].weight / torch.sqrt(moved[2].running_var + moved[2].eps)
    assert torch.allclose(scale[[0, 2, 3, 4]], torch.ones(4))
    assert float(scale[1]) < 0


def test_int8_chain_keeps_the_last_conv_float() -> None:
    layers = [nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1)]
    chain = Int8Chain(layers, float_last=True, engine=fused.int8_engine())
    chain(torch.rand(1, 4, 12, 10))
    chain.convert()
    assert type(chain.tail[0]) is nn.Conv2d
    with pytest.raises(ValueError, match="no convolution"):
        Int8Chain([nn.Conv2d(4, 1, 1)], float_last=True, engine=fused.int8_engine())


def test_int8_melody_of_the_published_model_agrees_on_real_audio(fixtures_dir) -> None:
    """The released melody2 model on 8 s of MedleyDB: decoded f0 frame by frame, int8 against
    float32 (calibrated on the synthetic default, not on this audio)."""
    import mir.pretrained as pretrained
    from mir.data.medleydb import MedleyDB

    module, _ = pretrained.load("deepsalience/melody2")
    track = MedleyDB(fixtures_dir / "medleydb", sr=22050).load("MusicDelta_Reggae")
    audio = track.audio[: 8 * 22050]
    task = module.tasks["melody"]
    f0 = {}
    for key, kw in (("float32", {}), ("int8", {"dtype": torch.qint8})):
        raw = infer_track(module.model, audio, {"melody": "frames"}, 30.0, 3.0, **kw)
        f0[key] = task.decode(raw["melody"], track)[1]
    a, b = f0["float32"], f0["int8"]
    same_voicing = (a > 0) == (b > 0)
    both = (a > 0) & (b > 0)
    cents = 1200 * np.abs(np.log2(np.where(both, b, 1) / np.where(both, a, 1)))
    assert both.sum() > 100  # [measured: 225 of 690 frames voiced in both]
    # [measured: voicing agrees on 99.4 % of frames, pitch within 50 cents on all]
    assert same_voicing.mean() > 0.95
    assert (cents[both] <= 50).mean() > 0.97


def test_an_integer_dtype_other_than_qint8_is_refused() -> None:
    with pytest.raises(ConfigError, match="inference dtype torch.int8"):
        inference_model(tiny_model(), torch.int8)


def test_logit_offset_is_the_mean_error_where_salience_can_be_decoded() -> None:
    ref = torch.tensor([[-9.0, -5.0, 0.0, 2.0]])  # sigmoid: ~0, 0.007, 0.5, 0.88
    q = torch.tensor([[-8.0, -4.0, -0.1, 1.7]])
    assert fused.logit_offset(ref, q) == pytest.approx((0.1 + 0.3) / 2)
    assert fused.logit_offset(ref[:, :2], q[:, :2]) == 0.0  # nothing a decoder would read
    model = tiny_model()
    q8 = fused.InferenceModel(model, torch.qint8)
    assert set(q8.logit_offset) == {"melody", "bass"}
    x = tones(model.frontend.sr, 3.0, seed=4)[None]
    with torch.no_grad():
        with_offset = q8(x)[0]
        offsets, q8.logit_offset = q8.logit_offset, {}
        without = q8(x)[0]
    for name, offset in offsets.items():
        torch.testing.assert_close(with_offset[name], without[name] + offset)


def test_int8_bias_correction_on_real_audio(fixtures_dir) -> None:
    """The released multi-f0 model on 20 s of a Bach10 chorale: where float32's salience is
    >= 0.1, int8's logits are lower on average (which lowers recall); the offset fitted on the
    synthetic calibration tones, not on this audio, removes most of that."""
    import mir.pretrained as pretrained
    from mir.data.bach10 import Bach10

    module, _ = pretrained.load("deepsalience/multif0")
    model = module.model.eval()
    track = Bach10(fixtures_dir / "bach10", sr=22050).load("01-AchGottundHerr")
    x = torch.as_tensor(track.audio[: 20 * 22050], dtype=torch.float32)[None]
    q8 = fused.InferenceModel(model, torch.qint8).eval()
    with torch.no_grad():
        ref = fused.InferenceModel(model).eval()(x)[0]["multif0"]
        corrected = q8(x)[0]["multif0"]
        q8.logit_offset = {}
        plain = q8(x)[0]["multif0"]
    near = torch.sigmoid(ref) >= fused.OFFSET_FLOOR
    bias_plain = float((plain - ref)[near].mean())
    bias_corrected = float((corrected - ref)[near].mean())
    # [measured: -0.048 without the offset, -0.016 with it]
    assert bias_plain < -0.02
    assert abs(bias_corrected) < 0.5 * abs(bias_plain)
