"""The fast inference copy of a model (mir.models.fused) gives the model's outputs.

Tolerance: float32 rounding of folded batch norms and a fused first layer, < 1e-5 of each head's
output range (measured about 1e-7).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from mir.frontend import HarmonicCQT
from mir.inference import infer_track
from mir.models.fused import (
    ChannelAffine,
    FrequencyFolded,
    FusedSalienceHeads,
    InferenceModel,
    batch_norms_as_affine,
    fold_batch_norms,
    inference_model,
)
from mir.models.heads import OnsetCRNN, SalienceHead
from mir.models.layers import ConvTrunk, SameConv2d
from mir.models.model import MultiTaskModel


def randomise_batch_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.4 * torch.rand(c, generator=g) - 0.2)


def small_model(extra: dict[str, nn.Module] | None = None, hidden: int = 8) -> MultiTaskModel:
    torch.manual_seed(0)
    fe = HarmonicCQT(bins_per_octave=12, n_octaves=4, fmin=65.4, harmonics=(0.5, 1, 2, 3))
    trunk = ConvTrunk(fe.n_harmonics, channels=(8, 8), kernels=((5, 5), (3, 3)))
    heads: dict[str, nn.Module] = {
        name: SalienceHead(8, hidden=hidden, wide_channels=4, freq_kernel=13, time_kernel=1)
        for name in ("multif0", "melody", "bass", "vocal")
    }
    heads.update(extra or {})
    model = MultiTaskModel(fe, trunk, heads)
    randomise_batch_norms(model)
    return model.eval()


def assert_same_outputs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].shape == b[name].shape, name
        scale = float(a[name].abs().max())
        assert scale > 0, name
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-5 * scale), name


def test_fold_batch_norms_equals_conv_then_bn() -> None:
    seq = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5), nn.ReLU())
    randomise_batch_norms(seq)
    seq.eval()
    x = torch.randn(2, 3, 11, 7)
    with torch.no_grad():
        ref = seq(x)
        folded = fold_batch_norms(nn.Sequential(*[m for m in seq]))
        assert isinstance(folded[1], nn.Identity)
        torch.testing.assert_close(folded(x), ref, rtol=1e-5, atol=1e-6)


def test_fused_heads_give_the_separate_heads_salience() -> None:
    model = small_model()
    fast = inference_model(model)
    assert isinstance(fast, InferenceModel)
    assert fast.fused is not None  # the four salience heads are one first layer
    assert fast.fused.first.out_channels == 4 * 8
    assert len(fast.others) == 0
    x = torch.randn(2, 22050) * 0.1
    with torch.no_grad():
        ref, feats = model(x)
        out, fast_feats = fast(x)
    assert_same_outputs(ref, out)
    torch.testing.assert_close(fast_feats.trunk, feats.trunk, rtol=1e-5, atol=1e-5)


def test_other_heads_run_beside_the_fused_ones() -> None:
    model = small_model({"drums": OnsetCRNN(8, 48, 3, conv_channels=4, pool=2, hidden=5)})
    fast = inference_model(model)
    assert fast.fused is not None
    assert list(fast.others) == ["drums"]
    x = torch.randn(1, 15000) * 0.1
    with torch.no_grad():
        assert_same_outputs(model(x)[0], fast(x)[0])


def test_heads_without_a_hidden_layer_fuse_their_wide_layer() -> None:
    model = small_model(hidden=0)  # as published: the wide layer reads the trunk
    fast = inference_model(model)
    assert fast.fused is not None
    # the wide layer is the fused first one, computed on folded bins (13 >= 2 * FREQ_FOLD)
    assert isinstance(fast.fused.first, FrequencyFolded)
    assert fast.fused.first.plain[0].kernel_size == (13, 1)
    x = torch.randn(1, 15000) * 0.1
    with torch.no_grad():
        assert_same_outputs(model(x)[0], fast(x)[0])


def test_heads_with_different_first_layers_are_not_fused_but_agree() -> None:
    wide = SalienceHead(8, hidden=0, wide_channels=4, freq_kernel=7, time_kernel=3)
    model = small_model({"other": wide}, hidden=0)
    randomise_batch_norms(model, seed=1)
    assert not FusedSalienceHeads.fusable(dict(model.heads))
    fast = inference_model(model)
    assert fast.fused is None
    assert len(fast.others) == 5
    x = torch.randn(1, 15000) * 0.1
    with torch.no_grad():
        assert_same_outputs(model(x)[0], fast(x)[0])


def test_training_model_is_returned_unchanged() -> None:
    model = small_model().train()
    assert inference_model(model) is model
    assert inference_model(nn.Linear(2, 2).eval()).__class__ is nn.Linear


def test_infer_track_fast_path_equals_plain_model(fixtures_dir) -> None:
    from mir.audio import load_audio

    model = small_model()
    wav = fixtures_dir / "bach10/01-AchGottundHerr/01-AchGottundHerr.wav"
    if not wav.is_file():
        pytest.skip(f"fixture {wav} missing")
    audio = load_audio(wav, model.frontend.sr)[: 12 * model.frontend.sr]
    kinds = dict.fromkeys(model.heads, "frames")
    fast = infer_track(model, audio, kinds, chunk_seconds=5.0, margin_seconds=3.0)
    slow = infer_track(model, audio, kinds, chunk_seconds=5.0, margin_seconds=3.0, fast=False)
    for name in kinds:
        assert fast[name].shape == slow[name].shape == (48, model.frontend.n_frames(len(audio)))
        scale = float(np.abs(slow[name]).max())
        np.testing.assert_allclose(fast[name], slow[name], rtol=0, atol=1e-5 * scale)


def test_bfloat16_fast_path_is_close_and_returns_float32() -> None:
    model = small_model()
    x = torch.randn(1, 15000) * 0.1
    with torch.no_grad():
        ref = model(x)[0]
        out = inference_model(model, torch.bfloat16)(x)[0]
    for name in ref:
        assert out[name].dtype == torch.float32
        err = float((out[name] - ref[name]).norm() / ref[name].norm())
        assert 0 < err < 0.1, (name, err)  # bf16 rounding: not exact, but close [0.01-0.04]


def test_keep_crops_frames_and_kept_frames_are_exact() -> None:
    model = small_model()
    fast = inference_model(model)
    # trunk (5, 5), (3, 3) and heads 3x3, (13, 1), 1x1: 2 + 1 + 1 + 0 + 0 time half-kernels
    assert fast.context is not None
    assert fast.context >= 4
    x = torch.randn(1, 22050) * 0.1
    seen: list[int] = []
    fast.trunk.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1]))
    with torch.no_grad():
        ref = model(x)[0]
        out = fast(x, keep=(30, 50))[0]
    n_frames = model.frontend.n_frames(x.shape[-1])
    assert seen == [20 + 2 * fast.context] < [n_frames]  # fewer frames through the trunk
    for name in ref:
        assert out[name].shape == ref[name].shape
        scale = float(ref[name].abs().max())
        torch.testing.assert_close(
            out[name][..., 30:50], ref[name][..., 30:50], rtol=0, atol=1e-5 * scale
        )
        assert float(out[name][..., :10].abs().max()) == 0.0  # not computed


@pytest.mark.parametrize(
    ("make", "n_bins"),
    [
        # the salience heads' layers after the first (mir layout, batch norm folded): 71 x 1
        (lambda: [nn.Conv2d(8, 4, (71, 1), padding=(35, 0)), nn.ReLU(), nn.Conv2d(4, 1, 1)], 360),
        # conv, BN, ReLU, with a time kernel
        (lambda: [nn.Conv2d(6, 4, (13, 3), padding=(6, 1)), nn.BatchNorm2d(4), nn.ReLU()], 48),
        # published layout: even 70 x 3 kernel with TensorFlow "same" padding, ReLU, then BN
        (
            lambda: [SameConv2d(5, 8, (70, 3)), nn.ReLU(), nn.BatchNorm2d(8), nn.Conv2d(8, 1, 1)],
            360,
        ),
        (lambda: [SameConv2d(5, 3, (6, 2)), nn.ReLU(), nn.BatchNorm2d(3)], 40),
        # F not a multiple of the fold: runs unfolded
        (lambda: [nn.Conv2d(8, 4, (13, 1), padding=(6, 0)), nn.ReLU()], 50),
    ],
)
def test_frequency_folded_equals_the_layers(make, n_bins: int) -> None:
    torch.manual_seed(0)
    layers = nn.Sequential(*make())
    randomise_batch_norms(layers)
    layers.eval()
    folded = FrequencyFolded(list(layers)).eval()
    x = torch.randn(2, layers[0].in_channels, n_bins, 11).contiguous(
        memory_format=torch.channels_last
    )
    with torch.no_grad():
        ref = layers(x.clone())
        out = folded(x.clone())
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5 * float(ref.abs().max()))


def test_frequency_folded_rejects_strided_layers() -> None:
    strided = [nn.Conv2d(4, 4, (9, 1), stride=(2, 1), padding=(4, 0))]
    assert not FrequencyFolded.foldable(strided)
    assert not FrequencyFolded.foldable([nn.ReLU()])  # no convolution
    assert not FrequencyFolded.foldable([nn.Conv2d(4, 4, (9, 1), padding=(2, 0))])  # shrinks
    with pytest.raises(ValueError, match="cannot be folded"):
        FrequencyFolded(strided)


@pytest.mark.parametrize("hidden", [0, 8])
def test_published_layout_heads_fuse_and_agree(hidden: int) -> None:
    """Keras layout (conv+ReLU, then BN; TensorFlow "same" padding of even kernels)."""
    torch.manual_seed(0)
    fe = HarmonicCQT(bins_per_octave=12, n_octaves=4, fmin=65.4, harmonics=(0.5, 1, 2, 3))
    trunk = ConvTrunk(fe.n_harmonics, channels=(8,), kernels=((5, 5),), layout="keras")
    heads: dict[str, nn.Module] = {
        name: SalienceHead(
            8, hidden=hidden, wide_channels=4, freq_kernel=14, time_kernel=2, layout="keras"
        )
        for name in ("multif0", "melody")
    }
    model = MultiTaskModel(fe, trunk, heads)
    randomise_batch_norms(model)
    model.eval()
    fast = inference_model(model)
    assert fast.fused is not None
    x = torch.randn(1, 15000) * 0.1
    with torch.no_grad():
        ref, feats = model(x)
        out, fast_feats = fast(x)
    assert_same_outputs(ref, out)
    # batch norms run in place only on tensors nothing else reads: the HCQT is untouched
    torch.testing.assert_close(fast_feats.hcqt, feats.hcqt, rtol=0, atol=0)


def test_single_salience_head_takes_the_fast_path() -> None:
    torch.manual_seed(0)
    fe = HarmonicCQT(bins_per_octave=12, n_octaves=4, fmin=65.4, harmonics=(0.5, 1, 2, 3))
    trunk = ConvTrunk(fe.n_harmonics, channels=(8,), kernels=((5, 5),), layout="keras")
    head = SalienceHead(8, hidden=0, wide_channels=4, freq_kernel=14, time_kernel=3, layout="keras")
    model = MultiTaskModel(fe, trunk, {"multif0": head})
    randomise_batch_norms(model)
    model.eval()
    fast = inference_model(model)
    assert fast.fused is not None
    assert isinstance(fast.fused.first, FrequencyFolded)
    assert fast.context is not None  # all convolutional: chunks may be cropped
    x = torch.randn(1, 15000) * 0.1
    with torch.no_grad():
        assert_same_outputs(model(x)[0], fast(x)[0])


def test_batch_norms_as_affine_equal_and_spare_the_input() -> None:
    seq = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.BatchNorm2d(3))
    randomise_batch_norms(seq)
    seq.eval()
    x = torch.randn(2, 3, 8, 5).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = seq(x)
        kept = x.clone()
        affine = batch_norms_as_affine(copy.deepcopy(seq))
        assert [type(m) for m in affine] == [ChannelAffine, nn.ReLU, ChannelAffine]
        assert not affine[0].inplace  # reads the caller's tensor
        assert affine[2].inplace  # reads the ReLU's output
        out = affine(x)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x, kept, rtol=0, atol=0)
