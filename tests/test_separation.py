"""The Jansson et al. (2017) U-Net head: physics of its 8192-Hz path, patch stitching,
chunked inference, remix augmentation, a smoke training run, and a real-audio oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mir.bsseval import bss_eval_v4, frame_median, si_sdr, si_sdr_improvement
from mir.data.datamodule import CropDataset, MirDataModule
from mir.data.track import Track
from mir.errors import AudioError, ConfigError
from mir.frontend import HarmonicCQT
from mir.inference import infer_track
from mir.models.features import Features
from mir.models.model import MultiTaskModel
from mir.models.unet import FFTResampler, JanssonUNet, _cqt_to_linear, masked_istft_blocks
from mir.tasks.salience import SingleF0Task
from mir.tasks.separation import SeparationTask
from mir.train import instantiate as mir_instantiate
from mir.train import run

SR = 22050
# a small U-Net on the published grid (8192 Hz, 1024/768, 512 bins), short patches
TINY_UNET = {"channels": (4, 8, 16), "patch_frames": 16, "patch_hop": 8, "per_source": False}


def _frontend() -> HarmonicCQT:
    return HarmonicCQT(bins_per_octave=12, n_octaves=6, harmonics=(0.5, 1, 2), n_fft=512)


def _head(**kw) -> JanssonUNet:
    torch.manual_seed(0)
    return JanssonUNet(2, _frontend(), **{**TINY_UNET, **kw}).eval()


def _sines(n: int, freqs: tuple[float, ...], sr: int = SR, phase: float = 0.3) -> np.ndarray:
    t = np.arange(n) / sr
    return sum(np.sin(2 * np.pi * f * t + phase) for f in freqs) / len(freqs)


def _sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2)))


# the 8192-Hz path -------------------------------------------------------------------------


@pytest.mark.parametrize("freq", [440.0, 3000.0])
def test_resampler_matches_a_sine_at_the_new_rate(freq: float) -> None:
    n = 2 * SR
    x = torch.from_numpy(_sines(n, (freq,)))[None].float()
    y = FFTResampler(SR, 8192)(x)[0].numpy()
    assert len(y) == round(n * 8192 / SR)
    expected = _sines(len(y), (freq,), sr=8192)
    inner = slice(800, -800)  # away from the zero-padded edges
    assert np.max(np.abs(y[inner] - expected[inner])) < 1e-3


def test_resampler_removes_what_the_new_rate_cannot_hold() -> None:
    x = torch.from_numpy(_sines(SR, (5000.0,)))[None].float()  # above 4096 Hz
    y = FFTResampler(SR, 8192)(x)[0].numpy()
    assert np.max(np.abs(y[800:-800])) < 1e-3


def test_resampler_round_trip_of_a_band_limited_signal() -> None:
    x = torch.from_numpy(_sines(SR, (110.0, 700.0, 2500.0)))[None].float()
    back = FFTResampler(8192, SR)(FFTResampler(SR, 8192)(x))
    assert back.shape == x.shape
    assert np.max(np.abs((back - x)[0, 2000:-2000].numpy())) < 1e-3


def test_mask_of_ones_returns_the_mixture_fullband_exactly() -> None:
    head = _head(reconstruct="fullband")
    fe = _frontend()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(3 * SR).astype(np.float32) * 0.1)
    held = torch.ones(2, head.n_bins, fe.n_frames(len(x)))
    est = head.separate(held, x, fe)
    assert est.shape == (2, len(x))
    np.testing.assert_allclose(est.numpy(), np.stack([x.numpy()] * 2), atol=1e-5)


def test_mask_of_ones_returns_the_band_limited_mixture_through_8192_hz() -> None:
    head = _head(reconstruct="paper")
    fe = _frontend()
    x = torch.from_numpy(_sines(3 * SR, (220.0, 1500.0, 3500.0, 6000.0))).float()
    held = torch.ones(2, head.n_bins, fe.n_frames(len(x)))
    est = head.separate(held, x, fe)[0].numpy()
    lowpassed = _sines(3 * SR, (220.0, 1500.0, 3500.0)) * 3 / 4  # 6 kHz is above 4096 Hz
    inner = slice(2000, -2000)
    assert np.max(np.abs(est[inner] - lowpassed[inner])) < 2e-3


@pytest.mark.parametrize("block", [7, 100])
def test_blockwise_inversion_equals_one_pass(block: int) -> None:
    fe = _frontend()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(2 * SR + 77).astype(np.float32))
    masks = torch.from_numpy(rng.random((2, fe.n_fft // 2 + 1, fe.n_frames(len(x))))).float()
    one = fe.istft(masks * fe.stft(x[None]), length=len(x))
    blocks = masked_istft_blocks(fe, x, lambda a, b: masks[..., a:b], 2, block_frames=block)
    np.testing.assert_allclose(blocks.numpy(), one.numpy(), atol=1e-5)


def test_half_masks_halve_the_mixture() -> None:
    head = _head(reconstruct="fullband")
    fe = _frontend()
    x = torch.from_numpy(_sines(SR, (300.0,))).float()
    est = head.separate(torch.full((2, head.n_bins, fe.n_frames(SR)), 0.5), x, fe)
    np.testing.assert_allclose(est.numpy(), 0.5 * np.stack([x.numpy()] * 2), atol=1e-5)


# patches and grids -------------------------------------------------------------------------


@pytest.mark.parametrize("t8", [5, 16, 17, 40])
def test_patches_overlap_add_to_the_input(t8: int) -> None:
    head = _head()
    x = torch.rand(2, 3, 8, t8)
    p, n_p = head._patches(x)
    assert p.shape == (2 * n_p, 3, 8, head.patch_frames)
    np.testing.assert_allclose(head._overlap_add(p, 2, n_p, t8).numpy(), x.numpy(), atol=1e-6)


def test_held_masks_recover_the_8192_hz_masks_exactly() -> None:
    head = _head()
    x = torch.randn(2, 5 * SR) * 0.1
    feats = Features(audio=x, hcqt=None)
    with torch.no_grad():
        m8 = head.paper_forward(feats)  # (B, S, 512, T8)
        held = head(feats)  # (B, S, 512, T)
    assert held.shape == (2, 2, 512, _frontend().n_frames(x.shape[-1]))
    assert m8.shape[-1] == head.n_frames8(x.shape[-1])
    torch.testing.assert_close(head.paper_masks(held, x.shape[-1]), m8, rtol=0, atol=0)


def test_guide_map_reads_f0_at_f_over_h() -> None:
    fe = _frontend()
    m = _cqt_to_linear(fe, 8192, 1024, (1, 2)).reshape(2, 512, fe.n_bins)
    k = int(np.argmin(np.abs(fe.freqs - 200.0)))  # a CQT bin near 200 Hz
    f0 = fe.freqs[k]
    for h in (1, 2):
        column = m[h - 1, :, k].numpy()  # linear bins that read CQT bin k
        peak = int(np.argmax(column))
        assert abs(peak * 8.0 - h * f0) <= 8.0, (h, peak * 8.0, h * f0)
    assert float(m[0, 0].sum()) == 0.0  # 0 Hz is below the CQT: reads nothing


def test_guided_head_reads_the_trunk() -> None:
    fe = _frontend()
    torch.manual_seed(0)
    head = JanssonUNet(2, fe, trunk_channels=6, guided=True, **TINY_UNET).eval()
    assert head.uses_trunk
    x = torch.randn(1, 3 * SR) * 0.1
    trunk = torch.randn(1, 6, fe.n_bins, fe.n_frames(x.shape[-1]))
    with torch.no_grad():
        a = head(Features(audio=x, hcqt=None, trunk=trunk))
        b = head(Features(audio=x, hcqt=None, trunk=2 * trunk))
    assert a.shape == b.shape
    assert not torch.allclose(a, b), "the masks depend on the trunk features"


# full tracks in chunks ---------------------------------------------------------------------


def test_chunked_inference_matches_unchunked() -> None:
    """30-s-style chunks with margins give the same separation as one pass (within the
    patch-placement differences of overlapping patches)."""
    fe = _frontend()
    task = SeparationTask(unet=lambda **kw: JanssonUNet(**kw, **TINY_UNET))
    task.bind(fe)
    torch.manual_seed(0)
    model = MultiTaskModel(fe, torch.nn.Identity(), {"separation": task.build_head(0)}).eval()
    rng = np.random.default_rng(1)
    audio = (_sines(20 * SR, (220.0, 330.0, 1200.0)) + 0.05 * rng.standard_normal(20 * SR)).astype(
        np.float32
    )
    kinds = {"separation": "frames"}
    whole = infer_track(model, audio, kinds, chunk_seconds=60.0, margin_seconds=0.0)
    chunked = infer_track(model, audio, kinds, chunk_seconds=5.0, margin_seconds=3.0)
    assert chunked["separation"].shape == whole["separation"].shape
    track = Track("t", audio, SR)
    a = task.decode(whole["separation"], track)
    b = task.decode(chunked["separation"], track)
    assert a.shape == (2, len(audio))
    for s in range(2):
        assert _sdr(a[s], b[s]) > 25.0, (s, _sdr(a[s], b[s]))


# augmentation -------------------------------------------------------------------------------


def _track(name: str, seed: int, n: int = 4 * SR) -> Track:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(n).astype(np.float32) * 0.1
    acc = rng.standard_normal(n).astype(np.float32) * 0.1
    times = np.arange(0, n / SR, 0.01)
    return Track(
        name,
        v + acc,
        SR,
        {
            "stems": {"vocals": v, "accompaniment": acc},
            "vocal": (times, np.full(len(times), 220.0)),
            "melody": (times, np.full_like(times, 220.0)),
        },
    )


def test_remixed_excerpts_mask_every_other_task() -> None:
    fe = _frontend()
    tasks = {"separation": SeparationTask(), "vocal": SingleF0Task("vocal", voice="vocal")}
    for t in tasks.values():
        t.bind(fe)
    tracks = [_track(f"t{i}", i) for i in range(3)]
    crop = fe.n_frames(SR)
    plain = CropDataset(tracks, tasks, crop, fe.hop, 8, seed=0)
    remixed = CropDataset(tracks, tasks, crop, fe.hop, 8, seed=0, remix_prob=1.0)
    for i in range(8):
        item = plain[i]
        assert item["mask"] == {"separation": True, "vocal": True}
        item = remixed[i]
        assert item["mask"] == {"separation": True, "vocal": False}
        assert not np.any(item["targets"]["vocal"].numpy())
        voc, acc = item["targets"]["separation"].numpy()
        np.testing.assert_allclose(item["audio"].numpy(), voc + acc, atol=1e-6)
        # vocals and accompaniment come from two different tracks
        src_v = [t.name for t in tracks if _contains(t.get("stems")["vocals"], voc)]
        src_a = [t.name for t in tracks if _contains(t.get("stems")["accompaniment"], acc)]
        assert len(src_v) == 1
        assert len(src_a) == 1
        assert src_v != src_a


def _contains(x: np.ndarray, seg: np.ndarray) -> bool:
    """Whether `seg` (zero-padded at the end) is a hop-aligned excerpt of `x`."""
    n = int(np.max(np.nonzero(seg)[0])) + 1
    for start in range(0, len(x) - n + 1, 256):
        if np.array_equal(x[start : start + n], seg[:n]):
            return True
    return False


def test_remixing_needs_two_tracks_with_stems() -> None:
    fe = _frontend()
    task = SeparationTask()
    task.bind(fe)
    tracks = [_track("a", 0), Track("b", np.zeros(SR, np.float32), SR)]
    ds = CropDataset(tracks, {"separation": task}, 50, fe.hop, 2, seed=0, remix_prob=1.0)
    assert ds.remix_prob == 0.0  # one eligible track: remixing is off, not an error


def test_datamodule_lengthens_excerpts_to_one_patch() -> None:
    fe = HarmonicCQT()
    task = SeparationTask(unet=lambda **kw: JanssonUNet(**kw))
    task.bind(fe)
    task.build_head(0)
    dm = MirDataModule({"x": object()}, crop_seconds=3.0)  # type: ignore[dict-item]
    dm.bind({"separation": task})
    assert dm.effective_crop_seconds == pytest.approx(task.min_crop_seconds)
    _, crop_frames = dm._grid()
    n = (crop_frames - 1) * fe.hop  # samples of an excerpt
    assert task.unet is not None
    assert task.unet.n_frames8(n) >= 128  # one full published patch


# configs and training -------------------------------------------------------------------------


def test_unet_model_without_separation_task_is_a_clear_error(compose, tmp_path: Path) -> None:
    cfg = compose(["task=melody", "model=unet_jansson"], tmp_path)
    with pytest.raises(ConfigError, match="task=separation"):
        mir_instantiate(cfg.model)


def test_published_unet_size(compose, tmp_path: Path) -> None:
    cfg = compose(["task=separation", "model=unet_jansson"], tmp_path, small=False)
    module = mir_instantiate(cfg.model)
    head = module.model.heads["separation"]
    assert isinstance(head, JanssonUNet)
    assert len(head.nets) == 2  # one network per target
    n = sum(p.numel() for p in head.nets[0].parameters())
    assert 9_700_000 < n < 9_900_000, n  # six levels, 16-512 channels
    assert not module.model.uses_trunk  # unguided: the HCQT trunk is not computed


TINY_OVERRIDES = [
    "task.separation.unet.channels=[4,8,16]",
    "task.separation.unet.patch_frames=16",
    "task.separation.unet.patch_hop=8",
    "trainer=smoke",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
]


@pytest.mark.parametrize(
    "overrides",
    [["task=separation", "model=unet_jansson"], ["experiment=jansson_unet_hcqt", "model=tiny"]],
    ids=["unet_jansson", "jansson_unet_hcqt"],
)
def test_smoke_training(compose, tmp_path: Path, overrides: list[str]) -> None:
    cfg = compose([*overrides, *TINY_OVERRIDES, "data.crop_seconds=2.0"], tmp_path)
    result = run(cfg)
    test = result["test"]["separation"]
    for key in ("vocals/SDR", "vocals/NSDR", "accompaniment/SIR", "vocals/SAR"):
        assert np.isfinite(test[key]), key
    if "vocal" in cfg.task:
        assert "Overall Accuracy" in result["test"]["vocal"]
        return
    # the trained checkpoint predicts stems for a stereo file at its own rate and length
    import soundfile as sf

    from mir import export, predict
    from mir.errors import MirError

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    sr_in, n_in = 44100, int(3.3 * 44100)
    stereo = 0.1 * np.random.default_rng(0).standard_normal((n_in, 2)).astype(np.float32)
    sf.write(tmp_path / "song.wav", stereo, sr_in)
    done, _, failed = predict.run(str(ckpt), str(tmp_path / "song.wav"), str(tmp_path / "pred"))
    assert (done, failed) == (1, 0)
    for source in ("vocals", "accompaniment"):
        y, sr = sf.read(next((tmp_path / "pred").rglob(f"{source}.wav")))
        assert (sr, y.shape) == (sr_in, (n_in, 2))
    # TorchScript cannot hold its length-dependent patching: one clear error
    with pytest.raises(MirError, match="JanssonUNet"):
        export.run(str(ckpt), str(tmp_path / "model.ts"))


# real audio ------------------------------------------------------------------------------------


def test_oracle_masks_on_the_unet_grid_separate_real_vocals(fixtures_dir: Path) -> None:
    """Ideal ratio masks on the U-Net's 8192-Hz grid, held on the frames and reconstructed
    as the task does, separate the MUSDB18 sample's vocals: an upper bound of the head's
    output representation."""
    from mir.data.musdb18 import MUSDB18

    track = MUSDB18(fixtures_dir / "musdb18", sr=SR).load("Music Delta - 80s Rock")
    fe = HarmonicCQT()
    scores = {}
    for mode in ("fullband", "paper"):
        task = SeparationTask(unet=lambda mode=mode, **kw: JanssonUNet(**kw, reconstruct=mode))
        task.bind(fe)
        head = task.build_head(0)
        stems = torch.from_numpy(
            np.stack([track.get("stems")["vocals"], track.get("stems")["accompaniment"]])
        )
        mags = head.magnitude(stems)  # (S, 512, T8)
        irm = mags / mags.sum(0, keepdim=True).clamp_min(1e-8)
        idx = head.hold_index(fe.n_frames(len(track.audio)), irm.shape[-1])
        est = task.decode(irm[..., idx].numpy(), track)
        scores[mode] = task.evaluate_track(track, est)
    # measured: vocals SDR 12.3 dB (fullband), 13.5 dB (paper); bss_eval's 512-tap
    # distortion filter forgives the paper mode's band limit
    assert scores["fullband"]["vocals/SDR"] > 10.0, scores
    assert scores["fullband"]["vocals/NSDR"] > 10.0, scores
    assert scores["paper"]["vocals/SDR"] > 10.0, scores
    assert scores["paper"]["accompaniment/SDR"] > 10.0, scores


def test_medleydb_fixture_has_a_vocal_stem_for_separation(fixtures_dir: Path) -> None:
    """MusicDelta_Reggae has a male singer stem, so it is labelled for separation."""
    from mir.data.medleydb import MedleyDB

    track = MedleyDB(fixtures_dir / "medleydb", sr=SR).load("MusicDelta_Reggae")
    assert track.meta["vocal_stems"]
    assert SeparationTask().has_labels(track)
    np.testing.assert_allclose(
        track.get("stems")["vocals"] + track.get("stems")["accompaniment"], track.audio, atol=0.05
    )


# metrics: SI-SDR and BSSEval v4 (mir.bsseval) ---------------------------------------------------


def _labelled_track(n: int = 3 * SR, seed: int = 0) -> Track:
    rng = np.random.default_rng(seed)
    vocals = _sines(n, (220.0, 330.0)) + 0.01 * rng.standard_normal(n)  # stationary
    accompaniment = 0.2 * rng.standard_normal(n)
    stems = {"vocals": vocals.astype(np.float32), "accompaniment": accompaniment.astype(np.float32)}
    return Track("synthetic", stems["vocals"] + stems["accompaniment"], SR, {"stems": stems})


def _orthogonal_noise(ref: np.ndarray, ratio: float, seed: int = 0) -> np.ndarray:
    """Zero-mean noise orthogonal to the zero-mean `ref`, with energy |ref|^2 / ratio."""
    r = ref - ref.mean()
    e = np.random.default_rng(seed).standard_normal(len(ref))
    e -= e.mean()
    e -= (e @ r) / (r @ r) * r
    return e * np.sqrt((r @ r) / ratio / (e @ e))


@pytest.mark.parametrize("ratio", [0.1, 1.0, 100.0])
def test_si_sdr_of_reference_plus_orthogonal_noise_is_the_energy_ratio(ratio: float) -> None:
    ref = _sines(SR, (440.0,)) + 0.3  # an offset: SI-SDR is zero-mean
    est = ref + _orthogonal_noise(ref, ratio)
    assert si_sdr(ref, est) == pytest.approx(10 * np.log10(ratio), abs=1e-9)


def test_si_sdr_is_per_channel_and_invariant_to_scaling_the_estimate() -> None:
    ref = np.stack([_sines(SR, (440.0,)), _sines(SR, (300.0, 500.0))])  # (C, N)
    est = ref + np.stack([_orthogonal_noise(ref[0], 10.0), _orthogonal_noise(ref[1], 2.0, 1)])
    expected = 10 * np.log10([10.0, 2.0])
    for gain in (1.0, 0.01, 37.0):
        np.testing.assert_allclose(si_sdr(ref[None], gain * est[None]), [expected], atol=1e-9)
    # a silent reference or estimate is undefined, a perfect estimate finite and very high
    assert np.isnan(si_sdr(np.zeros(SR), est[0]))
    assert np.isnan(si_sdr(ref[0], np.full(SR, 0.5)))  # only DC: silent once zero-mean
    assert 250.0 < si_sdr(ref[0], ref[0]) < np.inf


def test_metrics_reject_mismatched_or_empty_signals() -> None:
    with pytest.raises(AudioError, match=r"estimate's shape \(2, 99\).*\(2, 100\)"):
        si_sdr(np.ones((2, 100)), np.ones((2, 99)))
    with pytest.raises(AudioError, match="empty"):
        bss_eval_v4(np.zeros((2, 0)), np.zeros((2, 0)), SR)
    with pytest.raises(AudioError, match="NaN"):
        bss_eval_v4(np.ones((1, 100)), np.full((1, 100), np.nan), SR)
    with pytest.raises(AudioError, match="mixture"):
        si_sdr_improvement(np.ones((2, 100)), np.ones((2, 100)), np.ones(99))


def test_task_scores_si_sdr_and_no_improvement_for_the_mixture() -> None:
    task = SeparationTask()
    track = _labelled_track()
    base = task.evaluate_track(track, task.baseline(track))
    for s in task.sources:
        assert base[f"{s}/SI-SDRi"] == 0.0
        assert base[f"{s}/NSDR"] == pytest.approx(0.0, abs=1e-6)
        assert f"{s}/museval-SDR" not in base  # off by default
    # the mixture's SI-SDR is the stems' energy ratio (independent noise: nearly orthogonal)
    v, a = (track.get("stems")[k].astype(np.float64) for k in task.sources)
    ratio = np.sum((v - v.mean()) ** 2) / np.sum((a - a.mean()) ** 2)
    assert base["vocals/SI-SDR"] == pytest.approx(10 * np.log10(ratio), abs=0.1)
    # halving the mixture changes nothing; the true stems score very high
    half = task.evaluate_track(track, 0.5 * task.baseline(track))
    assert half["vocals/SI-SDR"] == pytest.approx(base["vocals/SI-SDR"], abs=1e-9)
    oracle = task.evaluate_track(track, np.stack([v, a]))
    for s in task.sources:
        assert oracle[f"{s}/SI-SDR"] > 250.0
        assert oracle[f"{s}/SI-SDRi"] > 200.0


def test_museval_option_adds_bss_eval_v4_medians(compose, tmp_path: Path) -> None:
    cfg = compose(["task=separation", "task.separation.museval=true"], tmp_path)
    task = mir_instantiate(cfg.task.separation)
    assert task.museval
    track = _labelled_track()
    v, a = (track.get("stems")[k] for k in task.sources)
    est = np.stack([v + 0.3 * a, a + 0.1 * v])
    scores = task.evaluate_track(track, est)
    keys = [f"{s}/museval-{m}" for s in task.sources for m in ("SDR", "SIR", "ISR", "SAR")]
    assert set(keys) <= set(scores)
    assert all(np.isfinite(scores[k]) for k in keys), scores
    # vocals leak 0.3 of the accompaniment: interference dominates, as in v3
    assert scores["vocals/museval-SIR"] == pytest.approx(scores["vocals/SIR"], abs=1.0)
    assert scores["vocals/museval-SAR"] > 60.0
    oracle = task.evaluate_track(track, np.stack([v, a]))
    assert all(oracle[k] > 60.0 for k in keys if not k.endswith("ISR")), oracle


def test_bss_eval_v4_frames_mono_and_silence() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 3 * SR + 100))  # a partial last frame: dropped
    est = ref + 0.1 * rng.standard_normal(ref.shape)
    est[:, SR : 2 * SR] = 0.0  # a silent estimate frame: NaN for every source
    mono = bss_eval_v4(ref, est, SR)
    one_channel = bss_eval_v4(ref[:, None], est[:, None], SR)
    for m in ("SDR", "ISR", "SIR", "SAR"):
        assert mono[m].shape == (2, 3)
        np.testing.assert_array_equal(np.isnan(mono[m]), [[False, True, False]] * 2)
        np.testing.assert_allclose(mono[m], one_channel[m], atol=1e-9)
    med = frame_median(mono)
    np.testing.assert_allclose(med["SDR"], np.nanmean(mono["SDR"], axis=1))  # two frames
    assert np.all(np.isnan(frame_median({"SDR": np.full((2, 3), np.nan)})["SDR"]))
