"""Tests of the Harmonic CQT front end (mir.frontend).

Tolerances (measured values in brackets, default 60 bins/octave unless said):
    * fft backend vs the direct float64 definition of librosa's CQT, per bin over time (chirp
      plus noise): relative Frobenius error < 0.5 %, max error < 1 % of the bin's max
      [worst of 18 bins: 0.26 %, 0.33 %; median per frame 0.7 %].
    * fft backend vs ``librosa.cqt``, per harmonic, noise plus chirp, away from 0.25 s edges:
      relative Frobenius error < 2.5 % [0.4-1.4 %; librosa resamples its lower octaves].
    * fft vs nnaudio (CQT2010v2) backends, small grid: relative Frobenius error < 3 %.
"""

from __future__ import annotations

import math
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

import mir.frontend as frontend
from mir.frontend import HarmonicCQT

SR = 22050


def tiny(**kw: object) -> HarmonicCQT:
    """A small front end as smoke configs use it."""
    args: dict = dict(bins_per_octave=12, n_octaves=4, fmin=65.4, harmonics=(0.5, 1, 2, 3))
    args.update(kw)
    return HarmonicCQT(**args)


@pytest.fixture(scope="module")
def fe60() -> HarmonicCQT:
    return HarmonicCQT(log_scale=False)


def noise_chirp(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    chirp = np.sin(2 * np.pi * 50.0 * (2.0 ** (t * 2.0) - 1.0) / (2.0 * np.log(2.0)))
    return (0.1 * rng.standard_normal(t.size) + 0.3 * chirp).astype(np.float32)


def direct_cqt(y: np.ndarray, f: float, hop: int, bpo: int) -> np.ndarray:
    """|CQT| of one bin by the definition (float64, zero padded), with librosa's scaling."""
    r = 2.0 ** (2.0 / bpo)
    length = (r + 1) / (r - 1) * SR / f
    taps = int(np.floor(length / 2) - np.floor(-length / 2))
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(taps) / taps)
    m = np.arange(taps) - int(np.ceil(taps / 2))
    h = w * np.exp(2j * np.pi * f / SR * m) / w.sum() * np.sqrt(length)
    yp = np.concatenate([np.zeros(taps), y.astype(float), np.zeros(taps)])
    t = np.arange(1 + len(y) // hop)[:, None]
    return np.abs((h * yp[t * hop - m + taps]).sum(1))


# ----------------------------------------------------------------------------- physics
def test_pure_sine_peaks_where_h_times_freq_matches(fe60: HarmonicCQT) -> None:
    k = 200
    f = float(fe60.freqs[k])  # exactly on a bin centre
    t = np.arange(SR) / SR
    y = torch.from_numpy((0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32))[None]
    mag = fe60.magnitude(y)[0, :, :, 20:-20].mean(-1)  # (H, F)
    for hi, h in enumerate(fe60.harmonics):
        # channel h, bin j measures h * freqs[j]: the sine shows where h * freqs[j] == f
        expect = k - round(fe60.bins_per_octave * math.log2(h))
        if 0 <= expect < fe60.n_bins:
            assert int(mag[hi].argmax()) == expect, f"harmonic {h}"
    # librosa scaling: a sine of amplitude A on a bin centre gives A * sqrt(L) / 2
    r = 2.0 ** (2.0 / fe60.bins_per_octave)
    length = (r + 1) / (r - 1) * SR / f
    assert float(mag[fe60.harmonics.index(1.0), k]) == pytest.approx(0.25 * length**0.5, rel=0.01)


def test_harmonic_tone_aligns_at_f0_in_every_integer_channel(fe60: HarmonicCQT) -> None:
    f0 = 440.0
    t = np.arange(SR) / SR
    y = sum(np.sin(2 * np.pi * n * f0 * t) for n in range(1, 7)) * 0.1
    mag = fe60.magnitude(torch.from_numpy(y.astype(np.float32))[None])
    out = fe60.log_compress(mag)[0, :, :, 20:-20].mean(-1)  # (H, F), log scaled
    k0 = round(fe60.bins_per_octave * math.log2(f0 / fe60.fmin))  # f0's bin on the grid
    integer = [i for i, h in enumerate(fe60.harmonics) if float(h).is_integer()]
    for i in integer:
        ch = out[i]
        # partial h of the tone sits at h * freqs[k0]: a peak at k0 in channel h
        assert int(ch[k0 - 3 : k0 + 4].argmax()) == 3, f"harmonic {fe60.harmonics[i]}"
        assert float(ch[k0]) > 0.8  # within 16 dB of the loudest bin of the whole HCQT
    # summed over integer channels, f0 is the single strongest bin (the deep-salience premise)
    assert int(out[integer].sum(0).argmax()) == k0


def test_matches_direct_definition(fe60: HarmonicCQT) -> None:
    y = noise_chirp(2.0)
    mag = fe60.magnitude(torch.from_numpy(y)[None])[0].double().numpy()
    for hi, h in enumerate(fe60.harmonics):
        for k in (0, 137, 359):
            ref = direct_cqt(y, fe60.fmin * h * 2 ** (k / 60), fe60.hop, 60)
            diff = mag[hi, k] - ref
            fro = np.linalg.norm(diff) / np.linalg.norm(ref)
            peak = np.abs(diff).max() / ref.max()
            assert fro < 0.005, (h, k, fro)
            assert peak < 0.01, (h, k, peak)


# ----------------------------------------------------------------------------- agreement
def test_agrees_with_librosa_per_harmonic(fe60: HarmonicCQT) -> None:
    y = noise_chirp(4.0)
    mag = fe60.magnitude(torch.from_numpy(y)[None])[0].numpy()
    edge = int(0.25 * fe60.frames_per_second)
    for hi, h in enumerate(fe60.harmonics):
        ref = np.abs(
            librosa.cqt(
                y,
                sr=SR,
                hop_length=fe60.hop,
                fmin=fe60.fmin * h,
                n_bins=fe60.n_bins,
                bins_per_octave=fe60.bins_per_octave,
            )
        )
        assert ref.shape == mag[hi].shape
        a, b = mag[hi][:, edge:-edge], ref[:, edge:-edge]
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 0.025, f"harmonic {h}"


def test_fft_and_nnaudio_backends_agree() -> None:
    pytest.importorskip("nnAudio")
    kw = dict(bins_per_octave=24, n_octaves=5, harmonics=(0.5, 1, 2, 3), log_scale=False)
    y = torch.from_numpy(noise_chirp(2.0, seed=1))[None]
    a = HarmonicCQT(**kw)(y)
    b = HarmonicCQT(backend="nnaudio", **kw)(y)
    assert a.shape == b.shape
    edge = 20
    a, b = a[..., edge:-edge], b[..., edge:-edge]
    assert float((a - b).norm() / b.norm()) < 0.03


def test_blocked_long_input_equals_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    fe = tiny(log_scale=False)
    y = torch.from_numpy(noise_chirp(3.0, seed=2))[None].repeat(2, 1)
    whole = fe(y)
    monkeypatch.setattr(frontend, "_MAX_BLOCK_FRAMES", 40)  # force overlapping blocks
    fe_blocks = tiny(log_scale=False)
    blocked = fe_blocks(y)
    assert blocked.shape == whole.shape
    # both are exact up to the kernel-band truncation, which depends on the block length
    assert float((blocked - whole).norm() / whole.norm()) < 2e-3


# ----------------------------------------------------------------------------- frames and STFT
@pytest.mark.parametrize("hop", [256, 512])
@pytest.mark.parametrize("n", [1, 100, 255, 256, 257, 1000, 5000])
def test_frame_convention(hop: int, n: int) -> None:
    fe = tiny(hop=hop)
    x = torch.randn(2, n)
    out = fe(x)
    t = fe.n_frames(n)
    assert t == 1 + n // hop >= 1
    assert out.shape == (2, fe.n_harmonics, fe.n_bins, t)
    assert fe.stft(x).shape == (2, fe.n_fft // 2 + 1, t)
    times = fe.frame_times(t)
    assert times.shape == (t,)
    assert times[0] == 0.0
    np.testing.assert_allclose(np.diff(times), hop / SR)


def test_grid_attributes() -> None:
    fe = HarmonicCQT()
    assert fe.n_bins == 360
    assert fe.n_harmonics == 6
    assert fe.harmonics == (0.5, 1, 2, 3, 4, 5)
    assert fe.frames_per_second == SR / 256
    np.testing.assert_allclose(fe.freqs, 32.70 * 2 ** (np.arange(360) / 60))
    assert fe.n_union_bins == 1260  # 0.5, 1, 2, 4 share one grid; 3 and 5 have their own


@pytest.mark.parametrize("hop", [256, 512])
def test_istft_inverts_stft(hop: int) -> None:
    fe = tiny(hop=hop)
    x = torch.randn(3, 12345)
    y = fe.istft(fe.stft(x), x.shape[-1])
    assert torch.allclose(y, x, atol=1e-5)


# ----------------------------------------------------------------------------- log scale, grads
def test_log_scale_range_silence_and_gradient() -> None:
    fe = tiny()
    x = torch.randn(2, 8000) * 0.1
    x[1] = 0.0  # a silent example
    x.requires_grad_(True)
    out = fe(x)
    assert torch.isfinite(out).all()
    val = out.detach()
    assert float(val.min()) >= 0.0
    assert float(val.max()) <= 1.0
    assert float(val[0].max()) == pytest.approx(1.0)
    assert float(val[1].abs().max()) == 0.0
    out.sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert float(x.grad[0].abs().sum()) > 0


def test_magnitude_gradient_finite_on_silence() -> None:
    fe = tiny()
    x = torch.zeros(1, 3000, requires_grad=True)
    fe.magnitude(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_double_precision() -> None:
    fe = tiny(log_scale=False)
    x = torch.randn(1, 6000)
    a = fe(x)
    fe64 = tiny(log_scale=False).double()
    b = fe64(x.double())
    assert b.dtype == torch.float64
    assert torch.allclose(a.double(), b, rtol=1e-3, atol=1e-4 * float(b.max()))
    assert fe64.stft(x.double()).dtype == torch.complex128


# ----------------------------------------------------------------------------- invalid input
@pytest.mark.parametrize(
    "kw",
    [
        dict(hop=0),
        dict(hop=-256),
        dict(harmonics=()),
        dict(fmin=2000.0, n_octaves=6),  # top bin above Nyquist
        dict(harmonics=(1, 8)),  # harmonic 8's top bin above Nyquist
        dict(backend="cuda-magic"),
    ],
)
def test_invalid_settings_raise(kw: dict) -> None:
    with pytest.raises(ValueError, match="HarmonicCQT"):
        tiny(**kw) if "harmonics" not in kw else HarmonicCQT(**kw)


def test_empty_audio_raises() -> None:
    with pytest.raises(ValueError, match="0 samples"):
        tiny()(torch.zeros(1, 0))


# ----------------------------------------------------------------------------- public power API
def test_power_rows_follow_block_layout(fe60: HarmonicCQT) -> None:
    """Row k of `power` is the CQT power at `block_layout().freqs[k]`, by the definition."""
    y = noise_chirp(2.0, seed=3)
    x = torch.from_numpy(y)[None]
    layout = fe60.block_layout()
    power = fe60.power(x)[0].double().numpy()  # (K, T)
    assert power.shape == (fe60.n_union_bins, fe60.n_frames(len(y)))
    assert sum(layout.group_sizes) == fe60.n_union_bins == len(layout.freqs)
    assert layout.dtype == torch.float32
    assert layout.margin == math.ceil(layout.half_kernel / layout.hop)
    for k in (0, 100, 555, 900, fe60.n_union_bins - 1):
        ref = direct_cqt(y, float(layout.freqs[k]), fe60.hop, fe60.bins_per_octave) ** 2
        assert np.linalg.norm(power[k] - ref) / np.linalg.norm(ref) < 0.01, k
    # the union of the grid: every harmonic's bins are among the computed ones
    for h in fe60.harmonics:
        wanted = fe60.fmin * h * 2.0 ** (np.arange(fe60.n_bins) / fe60.bins_per_octave)
        assert np.isclose(wanted[:, None], layout.freqs[None], rtol=1e-6).any(1).all(), h


@pytest.mark.parametrize("log_scale", [True, False])
def test_from_power_equals_forward(log_scale: bool) -> None:
    fe = tiny(log_scale=log_scale)
    x = torch.randn(2, 9000) * 0.1
    torch.testing.assert_close(fe.from_power(fe.power(x)), fe(x), rtol=1e-6, atol=1e-6)


def test_autograd_path_equals_inference_path() -> None:
    """With autograd the bands are concatenated instead of written in place; same values."""
    fe = HarmonicCQT(log_scale=False)
    x = torch.from_numpy(noise_chirp(1.5, seed=4))[None].repeat(2, 1)
    with torch.inference_mode():
        fast = fe(x)
    slow = fe(x.clone().requires_grad_(True))
    assert slow.requires_grad
    torch.testing.assert_close(slow.detach(), fast, rtol=1e-5, atol=1e-6 * float(fast.max()))


# ----------------------------------------------------------------------------- thread policy
@pytest.mark.parametrize(
    ("requested", "cores", "busy", "expect"),
    [
        (2, 2, 0.0, 2),  # quiet: what torch was asked for
        (2, 2, 0.4, 2),
        (2, 2, 1.0, 1),  # one core busy elsewhere
        (2, 2, 2.0, 1),  # oversubscribed: single-threaded, never 0
        (2, 2, 7.5, 1),
        (4, 16, 3.0, 4),  # never more than requested
        (8, 16, 10.0, 6),
    ],
)
def test_choose_threads(requested: int, cores: int, busy: float, expect: int) -> None:
    assert frontend.choose_threads(requested, cores, busy) == expect


def test_auto_threads_run_single_threaded_when_busy_and_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fe = tiny()
    seen: list[int] = []
    union_power = fe._union_power

    def spy(*args: object) -> object:
        seen.append(torch.get_num_threads())
        return union_power(*args)

    monkeypatch.setattr(fe, "_union_power", spy)
    monkeypatch.setattr(frontend, "_usable_cores", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(frontend, "_busy_elsewhere", lambda: 3.0)
        fe(torch.randn(1, 4000))
        assert seen[-1] == 1
        assert torch.get_num_threads() == 2  # restored after the call
        # a quiet machine, once the policy is read again
        monkeypatch.setattr(frontend, "_busy_elsewhere", lambda: 0.0)
        fe._policy = None
        fe(torch.randn(1, 4000))
        assert seen[-1] == 2
        # a fixed count is used as given
        fixed = tiny(threads=1)
        monkeypatch.setattr(fixed, "_union_power", spy)
        fixed(torch.randn(1, 4000))
        assert seen[-1] == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_busy_elsewhere_is_a_core_count() -> None:
    busy = frontend._busy_elsewhere()
    assert isinstance(busy, float)
    assert busy >= 0.0


S = frontend.RunQueueSample


@pytest.mark.parametrize(
    ("samples", "expect"),
    [
        ([S(1, 1, 1)] * 4, 0.0),  # quiet: only the reading thread runs
        # quiet, right after a 2-thread op: our OpenMP worker was spinning when the system count
        # was read and asleep when our threads were counted after (a single count said 1 busy)
        ([S(2, 2, 1), S(2, 2, 2), S(2, 1, 1), S(1, 1, 1)], 0.0),
        # quiet with a short-lived task (a kernel worker, a shell) in some of the samples
        ([S(3, 2, 2), S(2, 2, 2), S(3, 1, 1), S(2, 1, 1)], 0.0),
        ([S(3, 1, 1), S(4, 2, 2), S(3, 1, 1), S(5, 1, 1)], 2.0),  # two CPU-bound processes
        ([S(2, 1, 1)] * 4, 1.0),  # one
        ([S(9, 1, 2), S(10, 2, 2)], 7.0),  # oversubscribed
        ([S(1, 0, 0)], 0.0),  # the reading thread always counts as ours
        ([S(0, 0, 0)], 0.0),  # never negative
    ],
)
def test_busy_from_samples(samples: list, expect: float) -> None:
    assert frontend.busy_from_samples(samples) == expect


def test_busy_from_no_samples_raises() -> None:
    with pytest.raises(ValueError, match="no samples"):
        frontend.busy_from_samples([])


@pytest.mark.skipif(not Path("/proc/loadavg").exists(), reason="needs Linux /proc")
def test_run_queue_sample_counts_the_reading_thread() -> None:
    s = frontend._run_queue_sample()
    assert s.own_before >= 1  # this thread is running while it reads
    assert s.own_after >= 1
    assert s.running >= 1


@pytest.mark.parametrize(
    ("samples", "expect"),
    [
        ([S(2, 2, 1), S(2, 2, 2), S(3, 2, 2), S(1, 1, 1)], 2),  # quiet 2-core machine: both
        ([S(3, 1, 1), S(4, 2, 2), S(3, 1, 2), S(4, 1, 1)], 1),  # two busy processes beside it
        ([S(2, 1, 1), S(3, 2, 2), S(2, 1, 1), S(2, 1, 1)], 1),  # one
    ],
)
def test_auto_policy_from_injected_run_queue(
    monkeypatch: pytest.MonkeyPatch, samples: list, expect: int
) -> None:
    """The whole `threads="auto"` decision from run-queue readings, with no real load involved."""
    reads = iter(samples)
    monkeypatch.setattr(frontend, "_run_queue_sample", lambda: next(reads))
    monkeypatch.setattr(frontend, "_usable_cores", lambda: 2)
    monkeypatch.setattr(frontend, "_LOAD_SAMPLES", len(samples))
    monkeypatch.setattr(frontend, "_LOAD_SAMPLE_GAP", 0.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fe = tiny()
        with fe.thread_policy():
            assert torch.get_num_threads() == expect
        assert torch.get_num_threads() == 2
        assert next(reads, None) is None  # every sample was read, once
        # within THREAD_POLICY_SECONDS the choice is kept without reading again
        with fe.thread_policy():
            assert torch.get_num_threads() == expect
        # after it, the load is read again: now a quiet machine
        monkeypatch.setattr(frontend, "_LOAD_SAMPLES", 1)
        reads = iter([S(1, 1, 1)])
        assert fe._policy is not None
        stamp, requested, chosen = fe._policy
        fe._policy = (stamp - frontend.THREAD_POLICY_SECONDS - 1.0, requested, chosen)
        with fe.thread_policy():
            assert torch.get_num_threads() == 2
        assert next(reads, None) is None
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [0, -1, "two", 1.5, True])
def test_invalid_threads_raise(threads: object) -> None:
    with pytest.raises(ValueError, match="threads"):
        tiny(threads=threads)


def test_autocast_does_not_change_the_hcqt() -> None:
    """Mixed-precision training runs the front end under autocast; it stays float32."""
    fe = tiny()
    x = torch.randn(2, 9000) * 0.1
    ref = fe(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fe(x.clone().requires_grad_(True))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-6)
