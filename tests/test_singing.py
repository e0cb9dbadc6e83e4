"""The formant singer of the embedded dataset: it sings the pitch it says it sings, with
vibrato, consonants only in silence, and `voice="formant"` changes only the vocal line."""

from __future__ import annotations

import numpy as np
import pytest

from mir.data import embedded as E
from mir.data.singing import CONTROL_HOP, sing
from mir.errors import DatasetError

SR = 22050


def _line(rng: np.random.Generator) -> tuple[list[tuple[float, float, int, int]], int]:
    notes, t = [], 0.3
    for i, p in enumerate([55, 57, 59, 60, 62, 60, 59, 67, 64, 62]):
        d = float(rng.choice([0.4, 0.8, 1.2]))
        notes.append((t, t + d, p, 100))
        t += d + (0.3 if i % 4 == 3 else 0.0)  # phrases with rests between them
    return notes, int((t + 0.3) * SR)


@pytest.fixture(scope="module")
def sung() -> tuple[list, np.ndarray, np.ndarray]:
    notes, n = _line(np.random.default_rng(0))
    y, f0 = sing(notes, n, SR, np.random.default_rng(1))
    return notes, y, f0


def test_the_annotated_f0_is_the_pitch_sung(sung) -> None:
    import librosa

    _, y, f0 = sung
    frame = 2048
    est = librosa.yin(y, fmin=100, fmax=1000, sr=SR, frame_length=frame, hop_length=CONTROL_HOP)
    ref = f0[: len(est)]
    # frames well inside voiced runs (yin's window spans 2048 samples)
    half = frame // CONTROL_HOP // 2
    inside = np.convolve(ref > 0, np.ones(2 * half + 1), "same") == 2 * half + 1
    cents = 1200 * np.abs(np.log2(est[inside] / ref[inside]))
    assert inside.sum() > 500
    assert np.mean(cents < 50) > 0.9
    # and a melody shifted by a semitone would not match
    assert np.mean(1200 * np.abs(np.log2(est[inside] / (ref[inside] * 2 ** (1 / 12)))) < 50) < 0.1


def test_notes_carry_vibrato_and_rests_are_unvoiced(sung) -> None:
    notes, y, f0 = sung
    t = np.arange(len(f0)) * CONTROL_HOP / SR
    start, end, pitch, _ = max(notes, key=lambda n: n[1] - n[0])  # the longest note
    steady = (t > start + 0.5) & (t < end - 0.1)
    cents = 1200 * np.log2(f0[steady] / (440 * 2 ** ((pitch - 69) / 12)))
    assert 5 < np.std(cents) < 40  # vibrato, not a steady tone
    assert abs(np.median(cents)) < 20  # centred on the note
    rests = np.ones(len(f0), bool)
    for s, e, _, _ in notes:
        rests &= ~((t >= s - 0.01) & (t < e + 0.01))
    assert not np.any(f0[rests])
    # the signal is not silent in every rest: consonants and breaths sit there
    gaps = [(notes[i][1], notes[i + 1][0]) for i in range(len(notes) - 1)]
    gaps = [(a, b) for a, b in gaps if b - a > 0.2]
    energy = [np.sum(y[int(a * SR) : int(b * SR)] ** 2) for a, b in gaps]
    assert max(energy) > 0


def test_singer_is_deterministic_and_normalised() -> None:
    notes, n = _line(np.random.default_rng(0))
    a, fa = sing(notes, n, SR, np.random.default_rng(5))
    b, fb = sing(notes, n, SR, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fa, fb)
    assert a.dtype == np.float32
    assert len(a) == n
    assert np.max(np.abs(a)) == pytest.approx(1.0, abs=1e-6)
    silent, f0 = sing([], n, SR, np.random.default_rng(0))
    assert not np.any(silent)
    assert not np.any(f0)


def test_formant_voice_changes_only_the_vocal_line() -> None:
    cand = E.piece_order(0)[0]
    gm = E.render_piece(cand, 0, 0, SR, 256, 4.0)
    fm = E.render_piece(cand, 0, 0, SR, 256, 4.0, voice="formant")
    for stem in ("alto", "tenor", "bass", "drums"):
        np.testing.assert_allclose(
            fm.stems[stem] / fm.annotations["meta"]["gain"],
            gm.stems[stem] / gm.annotations["meta"]["gain"],
            atol=1e-5,
        )
    assert not np.allclose(fm.stems["soprano"], gm.stems["soprano"])
    a, b = fm.annotations, gm.annotations
    assert a["meta"]["voice"] == "formant"
    assert a["meta"]["programs"]["soprano"] == "formant singer"
    assert a["f0"]["bass"] == b["f0"]["bass"]
    assert a["onsets"] == b["onsets"]
    assert a["tags"] == b["tags"]
    sop, gm_sop = np.array(a["f0"]["soprano"]), np.array(b["f0"]["soprano"])
    both = (sop > 0) & (gm_sop > 0)
    assert both.sum() > 50
    # the sung f0 stays within a semitone of the written note, and is in the multi-f0
    assert np.median(np.abs(1200 * np.log2(sop[both] / gm_sop[both]))) < 50
    for k in np.flatnonzero(sop)[::25]:
        assert sop[k] in a["multif0"][k]
    with pytest.raises(DatasetError, match="voice"):
        E.EmbeddedDataset(voice="choir")
