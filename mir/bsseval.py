"""Separation metrics beyond mir_eval: BSSEval v4 (museval, SiSEC 2018) and SI-SDR.

Conventions:
    * Signals are (S, N) mono or (S, C, N) multichannel source images, float, at one rate;
      references and estimates have the same shape and are matched by index (no
      permutation).
    * BSSEval v4 (Stöter, Liutkus & Ito, "The 2018 Signal Separation Evaluation Campaign",
      LVA/ICA 2018) is museval's ``bss_eval`` in its ``v4`` mode, reimplemented here after
      ``museval.metrics`` (MIT): the 512-tap distortion filters are time-invariant (fitted
      once on the whole signals), the energies are measured on frames of 1 s with a hop of
      1 s (museval's ``eval_mus_track`` defaults), a last partial frame is dropped, and a
      frame where any reference or any estimate is silent is NaN for every source. The
      filters have 512 taps at the signals' rate (museval's default, 11.6 ms at 44.1 kHz).
      SiSEC 2018 reports the median over a track's frames (`frame_median`).
    * SI-SDR (Le Roux, Wisdom, Erdogan & Hershey, "SDR - half-baked or well done?",
      ICASSP 2019): both signals are made zero-mean, the reference is scaled by the
      least-squares factor, per channel. A silent reference or estimate gives NaN; a
      perfect estimate is capped at 10 log10(1 / eps^2) = 313 dB (float64 precision) so
      that it stays finite in means.
    * All values are in dB.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
from scipy.linalg import toeplitz
from scipy.signal import fftconvolve

from mir.errors import AudioError, ConfigError

METRICS = ("SDR", "ISR", "SIR", "SAR")
"""BSSEval v4 image metrics, in museval's order."""

_EPS2 = np.finfo(np.float64).eps ** 2  # noise floor relative to the target's energy


def _check_pair(reference: np.ndarray, estimate: np.ndarray, where: str) -> None:
    if reference.shape != estimate.shape:
        raise AudioError(
            f"{where}: the estimate's shape {estimate.shape} differs from the reference's "
            f"{reference.shape}"
        )
    if reference.size == 0:
        raise AudioError(f"{where}: empty signals (shape {reference.shape})")
    for name, x in (("reference", reference), ("estimate", estimate)):
        if not np.all(np.isfinite(x)):
            raise AudioError(f"{where}: the {name} holds NaN or infinite samples")


def _images(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, N) or (S, C, N) pairs -> (S, N, C) float64, museval's layout."""
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    _check_pair(ref, est, "bss_eval_v4")
    if ref.ndim not in (2, 3):
        raise AudioError(f"bss_eval_v4: signals must be (S, N) or (S, C, N), got shape {ref.shape}")
    if ref.ndim == 2:
        return ref[..., None], est[..., None]
    return np.moveaxis(ref, 1, 2), np.moveaxis(est, 1, 2)


def _silent(x: np.ndarray) -> bool:
    """museval's test on (S, N, C): some source whose channel sum is zero throughout."""
    return bool(np.any(np.all(x.sum(axis=2) == 0, axis=1)))


def bss_eval_v4(
    reference: np.ndarray,
    estimate: np.ndarray,
    sr: float,
    window: float = 1.0,
    hop: float = 1.0,
    filters_len: int = 512,
) -> dict[str, np.ndarray]:
    """Framewise BSSEval v4 image metrics with time-invariant filters, as museval computes.

    Args:
        reference: (S, N) or (S, C, N) true source images.
        estimate: estimated images, the same shape.
        sr: sample rate in Hz (frames are ``floor(window * sr)`` samples).
        window: frame length in s.
        hop: frame hop in s.
        filters_len: distortion filter length in samples.

    Returns:
        metric name (``SDR``, ``ISR``, ``SIR``, ``SAR``) -> (S, T) in dB, NaN on frames
        where a reference or an estimate is silent.

    Raises:
        AudioError: the shapes differ, the signals are empty or not finite.
        ConfigError: a window, hop or filter length below one sample.
    """
    refs, ests = _images(reference, estimate)
    n_src, n, n_ch = refs.shape
    win, step, flen = int(np.floor(window * sr)), int(np.floor(hop * sr)), int(filters_len)
    if win < 1 or step < 1 or flen < 1:
        raise ConfigError(
            f"bss_eval_v4: window {window} s, hop {hop} s at {sr} Hz and filters_len "
            f"{filters_len} must each be at least one sample"
        )
    nfft = int(2 ** np.ceil(np.log2(n + flen - 1)))
    rf = np.fft.rfft(refs, n=nfft, axis=1)  # (S, F, C)
    ef = np.fft.rfft(ests, n=nfft, axis=1)

    def lags(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cross-correlation sum_t a[t + k] b[t] at lags 0, -1, ..., -(flen - 1)."""
        r = np.fft.irfft(a * np.conj(b), n=nfft)
        return np.concatenate([r[:1], r[-1:-flen:-1]])

    gram = np.zeros((n_src, n_src, n_ch, n_ch, flen, flen))
    pairs = itertools.product(range(n_src), range(n_ch))
    for (i, c1), (j, c2) in itertools.combinations_with_replacement(pairs, 2):
        r = np.fft.irfft(rf[j, :, c2] * np.conj(rf[i, :, c1]), n=nfft)
        block = toeplitz(np.concatenate([r[:1], r[-1:-flen:-1]]), r[:flen])
        gram[j, i, c2, c1] = block
        gram[i, j, c1, c2] = block.T

    def filters(srcs: list[int], e: np.ndarray) -> np.ndarray:
        """Least-squares filters (S', C, L, C) projecting e (F, C) on delayed srcs."""
        d = np.zeros((len(srcs), n_ch, flen, n_ch))
        for (k, j), cj, c in itertools.product(enumerate(srcs), range(n_ch), range(n_ch)):
            d[k, cj, :, c] = lags(rf[j, :, cj], e[:, c])
        g = gram[np.ix_(srcs, srcs)]  # (S', S', C, C, L, L)
        g = np.moveaxis(g, (1, 3), (3, 4)).reshape(len(srcs) * n_ch * flen, -1)
        sol = np.linalg.solve(g + np.finfo(float).eps * np.eye(len(g)), d.reshape(-1, n_ch))
        return sol.reshape(len(srcs), n_ch, flen, n_ch)

    def project(x: np.ndarray, filt: np.ndarray) -> np.ndarray:
        """Filter (S', w, C) sources with (S', C, L, C) filters -> (w + L - 1, C)."""
        out = np.zeros((x.shape[1] + flen - 1, n_ch))
        for j, cj, c in itertools.product(range(x.shape[0]), range(n_ch), range(n_ch)):
            out[:, c] += fftconvolve(filt[j, cj, :, c], x[j, :, cj])
        return out

    c_all = [filters(list(range(n_src)), ef[j]) for j in range(n_src)]
    c_own = [filters([j], ef[j]) for j in range(n_src)]
    n_frames = 1 if win >= n else (n - win + step) // step
    out = {m: np.full((n_src, n_frames), np.nan) for m in METRICS}

    def db(num: float, den: float) -> float:
        return float("inf") if den == 0 else float(10 * np.log10(num / den))

    for t in range(n_frames):
        sl = slice(t * step, min(t * step + win, n))
        w = sl.stop - sl.start
        if _silent(refs[:, sl]) or _silent(ests[:, sl]):
            continue
        for j in range(n_src):
            s_true = np.zeros((w + flen - 1, n_ch))
            s_true[:w] = refs[j, sl]
            e_spat = project(refs[j : j + 1, sl], c_own[j]) - s_true
            e_interf = project(refs[:, sl], c_all[j]) - s_true - e_spat
            e_artif = -s_true - e_spat - e_interf
            e_artif[:w] += ests[j, sl]
            energy = np.sum(s_true**2)
            out["SDR"][j, t] = db(energy, np.sum((e_spat + e_interf + e_artif) ** 2))
            out["ISR"][j, t] = db(energy, np.sum(e_spat**2))
            out["SIR"][j, t] = db(np.sum((s_true + e_spat) ** 2), np.sum(e_interf**2))
            out["SAR"][j, t] = db(np.sum((s_true + e_spat + e_interf) ** 2), np.sum(e_artif**2))
    return out


def frame_median(framewise: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Median over frames (NaN frames ignored; NaN when every frame is), as SiSEC 2018.

    Args:
        framewise: metric -> (S, T), e.g. `bss_eval_v4`'s output.

    Returns:
        metric -> (S,).
    """
    out = {}
    for k, v in framewise.items():
        v = np.asarray(v, dtype=np.float64)
        out[k] = np.array(
            [
                np.median(r[~np.isnan(r)]) if (~np.isnan(r)).any() else np.nan
                for r in v.reshape(-1, v.shape[-1])
            ]
        ).reshape(v.shape[:-1])
    return out


def museval_scores(reference: np.ndarray, estimate: np.ndarray, sr: float) -> dict[str, np.ndarray]:
    """SiSEC 2018's per-track scores: BSSEval v4 on 1-s frames, median over frames.

    Args:
        reference: (S, N) or (S, C, N) true source images.
        estimate: estimated images, the same shape.
        sr: sample rate in Hz.

    Returns:
        metric name (``SDR``, ``ISR``, ``SIR``, ``SAR``) -> (S,) in dB.
    """
    return frame_median(bss_eval_v4(reference, estimate, sr))


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Scale-invariant SDR (Le Roux et al. 2019), zero-mean, along the last axis.

    Args:
        reference: (..., N) true signals, e.g. (N,), (S, N) or (S, C, N).
        estimate: estimated signals, the same shape.

    Returns:
        (...) in dB: one value per source and channel (a 0-d array for (N,) input).

    Raises:
        AudioError: the shapes differ, the signals are empty or not finite.
    """
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    _check_pair(ref, est, "si_sdr")
    if ref.ndim == 0:
        raise AudioError("si_sdr: signals must have a time axis, got scalars")
    ref = ref - ref.mean(axis=-1, keepdims=True)
    est = est - est.mean(axis=-1, keepdims=True)
    ref_energy = np.sum(ref**2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.sum(ref * est, axis=-1) / ref_energy
        target = alpha[..., None] * ref
        signal = np.sum(target**2, axis=-1)
        noise = np.maximum(np.sum((est - target) ** 2, axis=-1), _EPS2 * signal)
        value = 10 * np.log10(signal / noise)
    defined = (ref_energy > 0) & np.any(est != 0, axis=-1)
    return np.where(defined, value, np.nan)


def si_sdr_improvement(
    reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray
) -> np.ndarray:
    """SI-SDRi: SI-SDR of `estimate` minus that of the mixture used as the estimate.

    Args:
        reference: (S, N) or (S, C, N) true signals.
        estimate: estimated signals, the same shape.
        mixture: (N,) or (C, N) mixture, the same for every source.

    Returns:
        (S,) or (S, C) in dB.

    Raises:
        AudioError: the shapes do not match.
    """
    mix = np.asarray(mixture, dtype=np.float64)
    ref = np.asarray(reference)
    if mix.shape != ref.shape[1:]:
        raise AudioError(
            f"si_sdr_improvement: the mixture's shape {mix.shape} is not the reference's "
            f"per-source shape {ref.shape[1:]}"
        )
    return si_sdr(ref, estimate) - si_sdr(ref, np.broadcast_to(mix, ref.shape))
