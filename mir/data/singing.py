"""A formant singing-voice synthesiser for the embedded dataset's vocal line.

The General-MIDI voice patches ("choir aahs", "voice oohs") are steady, vibrato-free
samples, far from a real singer; a separator or an f0 tracker trained on them learns little
that carries over to real singing. This synthesiser sings a note list the way a singer
does, and returns the exact f0 it sang, so annotations stay true:

    * f0: the notes' pitches (equal temperament, A4 = 440 Hz), glided over about 50 ms
      between legato notes, with vibrato (rate 4.8-6.5 Hz, depth 15-45 cents, fading in
      after 0.15 s of each note) and a slow drift of a few cents; drawn per phrase.
    * source: harmonics up to 8 kHz (and below Nyquist) with a spectral tilt of
      -6 to -10 dB per octave and a little aspiration noise.
    * filter: five formants of a vowel drawn per note from a, e, i, o, u (the soprano or
      tenor table of Csound's formant values, chosen by the line's median pitch), moving
      to the next vowel over 60 ms.
    * consonants: about half of the notes start with a short unvoiced noise burst
      (a sibilant above 4 kHz or a breath at 1-4 kHz) in the silence just before it,
      which the annotation keeps unvoiced.
    * level: 30 ms attack and 60 ms release around each phrase; note dynamics from the
      MIDI velocity.

Everything is numpy and seeded; a 30-s line takes about a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.signal

# Csound's formant table: (frequency Hz, amplitude dB, bandwidth Hz) x 5 formants per vowel
FORMANTS: dict[str, dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]]] = {
    "soprano": {
        "a": ((800, 1150, 2900, 3900, 4950), (0, -6, -32, -20, -50), (80, 90, 120, 130, 140)),
        "e": ((350, 2000, 2800, 3600, 4950), (0, -20, -15, -40, -56), (60, 100, 120, 150, 200)),
        "i": ((270, 2140, 2950, 3900, 4950), (0, -12, -26, -26, -44), (60, 90, 100, 120, 120)),
        "o": ((450, 800, 2830, 3800, 4950), (0, -11, -22, -22, -50), (70, 80, 100, 130, 135)),
        "u": ((325, 700, 2700, 3800, 4950), (0, -16, -35, -40, -60), (50, 60, 170, 180, 200)),
    },
    "tenor": {
        "a": ((650, 1080, 2650, 2900, 3250), (0, -6, -7, -8, -22), (80, 90, 120, 130, 140)),
        "e": ((400, 1700, 2600, 3200, 3580), (0, -14, -12, -14, -20), (70, 80, 100, 120, 120)),
        "i": ((290, 1870, 2800, 3250, 3540), (0, -15, -18, -20, -30), (40, 90, 100, 120, 120)),
        "o": ((400, 800, 2600, 2800, 3000), (0, -10, -12, -12, -26), (40, 80, 100, 120, 120)),
        "u": ((350, 600, 2700, 2900, 3300), (0, -20, -17, -14, -26), (40, 60, 100, 120, 120)),
    },
}
VOWELS = ("a", "e", "i", "o", "u")
CONTROL_HOP = 64  # samples between control points (f0, amplitude, formants)
MAX_HARMONIC_HZ = 8000.0


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    """Moving average over `n` control points (same length, edges held)."""
    if n <= 1:
        return x
    pad = np.pad(x, (n // 2, n - 1 - n // 2), mode="edge")
    return np.convolve(pad, np.ones(n) / n, mode="valid")


def _envelope(freqs: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Linear amplitude of a formant filter at `freqs` (T, K) for per-frame formant
    parameters `table` (T, 3, 5): frequencies, amplitudes in dB, bandwidths."""
    f, a, b = table[:, 0, None, :], table[:, 1, None, :], table[:, 2, None, :]
    peaks = 10 ** (a / 20) / np.sqrt(1 + ((freqs[..., None] - f) / (b / 2)) ** 2)
    return peaks.sum(-1) + 10 ** (-60 / 20)


def sing(
    notes: Sequence[tuple[float, float, int, int]],
    n_samples: int,
    sr: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Sing `notes` (start s, end s, MIDI pitch, velocity), monophonically: where notes
    overlap, the higher one is sung.

    Returns:
        audio: (n_samples,) float32, peak about 1 (the caller sets the level).
        f0: (n_control,) Hz on the control grid ``k * CONTROL_HOP / sr`` (0 = unvoiced),
            the pitch actually sung (glides, vibrato and drift included).
    """
    n_ctl = n_samples // CONTROL_HOP + 1
    t_ctl = np.arange(n_ctl) * CONTROL_HOP / sr
    cents = np.zeros(n_ctl)  # sung pitch in cents above MIDI 0 where voiced
    level = np.zeros(n_ctl)
    vowel_idx = np.zeros(n_ctl, dtype=int)
    note_age = np.full(n_ctl, np.inf)  # seconds since the current note began
    onsets: list[float] = []
    for start, end, pitch, vel in sorted(notes, key=lambda n: (n[2], n[0])):  # high wins
        lo, hi = np.searchsorted(t_ctl, [start, end])
        if hi <= lo:
            continue
        cents[lo:hi] = 100.0 * pitch
        level[lo:hi] = (vel / 127.0) ** 1.5
        vowel_idx[lo:hi] = rng.integers(len(VOWELS))
        note_age[lo:hi] = t_ctl[lo:hi] - t_ctl[lo]
        onsets.append(start)
    voiced = level > 0
    if not voiced.any():
        return np.zeros(n_samples, np.float32), np.zeros(n_ctl)
    ms = sr / CONTROL_HOP / 1000.0  # control points per ms

    # f0: glides between legato notes (smooth within voiced runs), vibrato, drift
    idx = np.where(voiced, np.arange(n_ctl), -1)
    np.maximum.accumulate(idx, out=idx)
    idx[idx < 0] = int(np.argmax(voiced))  # before the first note: its pitch
    filled = cents[idx]  # hold the last pitch through gaps, so glides stay inside runs
    glide = _smooth(filled, max(1, int(50 * ms)))
    rate = rng.uniform(4.8, 6.5)
    depth = rng.uniform(15.0, 45.0)
    fade_in = np.clip((note_age - 0.15) / 0.3, 0.0, 1.0)
    vib = depth * fade_in * np.sin(2 * np.pi * rate * t_ctl + rng.uniform(0, 2 * np.pi))
    drift = _smooth(rng.normal(0, 1, n_ctl), max(1, int(400 * ms)))
    drift *= 6.0 / max(float(np.std(drift)), 1e-9)
    sung = np.where(voiced, glide + vib + drift, 0.0)
    f0 = np.where(voiced, 440.0 * 2 ** ((sung / 100.0 - 69.0) / 12.0), 0.0)

    # level: phrase attack/release, a little tremolo
    amp = _smooth(level, max(1, int(30 * ms)))
    amp = np.where(voiced, amp, _smooth(level, max(1, int(60 * ms))))
    amp *= 1 + 0.05 * np.sin(2 * np.pi * rate * t_ctl)

    # formants: the vowel of each note, moving over 60 ms
    voice = "tenor" if np.median(f0[voiced]) < 300.0 else "soprano"
    tables = np.array([FORMANTS[voice][v] for v in VOWELS], dtype=np.float64)  # (5, 3, 5)
    table = tables[vowel_idx]  # (T, 3, 5)
    k_smooth = max(1, int(60 * ms))
    table = np.stack([_smooth(col, k_smooth) for col in table.reshape(len(table), -1).T], -1)
    table = table.reshape(-1, 3, 5)
    tilt_db = rng.uniform(6.0, 10.0)  # per octave

    # harmonics, at the sample rate
    t = np.arange(n_samples)
    x_ctl = np.arange(n_ctl) * CONTROL_HOP
    f0_ctl = np.where(voiced, f0, f0[idx])  # held through rests, so the phase runs on
    phase = 2 * np.pi * np.cumsum(np.interp(t, x_ctl, f0_ctl)) / sr
    out = np.zeros(n_samples)
    f_lo = float(f0[voiced].min())
    n_harm = int(min(MAX_HARMONIC_HZ, 0.45 * sr) // f_lo)
    ks = np.arange(1, n_harm + 1)
    hf = f0_ctl[:, None] * ks[None, :]  # (T, K)
    gains = _envelope(hf, table) * (ks[None, :] ** (-tilt_db / 6.02))
    gains *= (hf < min(MAX_HARMONIC_HZ, 0.45 * sr)) * amp[:, None]
    for k in ks:
        g = gains[:, k - 1]
        if not g.any():
            continue
        out += np.interp(t, x_ctl, g) * np.sin(k * phase)

    # aspiration noise shaped like the vowel, and consonant bursts before some notes
    noise = rng.normal(0, 1, n_samples)
    sos = scipy.signal.butter(2, [1000, min(6000, 0.45 * sr)], "bandpass", fs=sr, output="sos")
    out += 0.02 * np.interp(t, x_ctl, amp) * scipy.signal.sosfilt(sos, noise)
    peak_voiced = float(np.max(np.abs(out))) or 1.0
    for start in onsets:
        if rng.random() < 0.5:
            continue
        dur = rng.uniform(0.03, 0.08)
        a, b = int((start - dur) * sr), int(start * sr)
        lo, hi = np.searchsorted(t_ctl, [a / sr, b / sr])
        if a < 0 or b <= a or voiced[max(lo - 1, 0) : hi].any():  # only into silence
            continue
        band = (4000, 0.45 * sr) if rng.random() < 0.6 else (1000, 4000)
        sos = scipy.signal.butter(4, band, "bandpass", fs=sr, output="sos")
        burst = scipy.signal.sosfilt(sos, rng.normal(0, 1, b - a)) * np.hanning(b - a)
        burst *= rng.uniform(0.05, 0.2) * peak_voiced / max(float(np.max(np.abs(burst))), 1e-9)
        out[a:b] += burst
    out /= max(float(np.max(np.abs(out))), 1e-9)
    return out.astype(np.float32), f0
