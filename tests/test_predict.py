"""`mir.predict` and `mir.outputs`: written files parse back and match the estimates."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import mir_eval
import numpy as np
import pytest
import soundfile as sf

from mir import outputs
from mir.audio import load_audio
from mir.data.track import Track
from tests._ckpt import trained_ckpt, trained_module  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


# -- writers and note segmentation (no model) -----------------------------------------------
def test_f0_to_notes_splits_jumps_and_drops_blips():
    times = np.arange(100) * 0.01
    f0 = np.zeros(100)
    f0[0:30] = 440.0 * 2 ** (20 / 1200 * np.sin(np.arange(30)))  # +-20 cents vibrato: one note
    f0[30:50] = 494.0  # a whole tone up: a new note, no gap
    f0[60:63] = 300.0  # 30 ms blip: dropped
    f0[70:90] = 220.0
    notes = outputs.f0_to_notes(times, f0, min_duration=0.05)
    assert [round(outputs.hz_to_midi(n[2]).item()) for n in notes] == [69, 71, 57]
    np.testing.assert_allclose([n[0] for n in notes], [0.0, 0.30, 0.70], atol=1e-9)
    np.testing.assert_allclose([n[1] for n in notes], [0.30, 0.50, 0.90], atol=1e-9)


def test_multif0_to_notes_per_pitch_runs():
    times = np.arange(20) * 0.01
    freqs = [np.array([220.0, 330.0])] * 10 + [np.array([220.0])] * 8 + [np.zeros(0)] * 2
    notes = outputs.multif0_to_notes(times, freqs, min_duration=0.05)
    got = [(round(a, 6), round(b, 6), round(outputs.hz_to_midi(h).item())) for a, b, h in notes]
    assert got == [(0.0, 0.18, 57), (0.0, 0.10, 64)]


def test_text_writers_round_trip(tmp_path):
    times = np.arange(5) * 0.0116
    f0 = np.array([0.0, 110.0, 110.5, 0.0, 987.654])
    outputs.write_f0(tmp_path / "f0.csv", times, f0)
    t, f = mir_eval.io.load_time_series(str(tmp_path / "f0.csv"), delimiter=",")
    np.testing.assert_allclose(t, times, atol=1e-6)
    np.testing.assert_allclose(f, f0, atol=1e-4)

    freqs = [np.zeros(0), np.array([330.0, 110.0]), np.array([55.5])]
    outputs.write_multif0(tmp_path / "m.csv", times[:3], freqs)
    t, fs = mir_eval.io.load_ragged_time_series(str(tmp_path / "m.csv"))
    np.testing.assert_allclose(t, times[:3], atol=1e-6)
    for got, want in zip(fs, freqs, strict=True):
        np.testing.assert_allclose(got, np.sort(want), atol=1e-4)

    outputs.write_beats(tmp_path / "beats.txt", np.array([0.5, 1.0, 1.5]))
    np.testing.assert_allclose(mir_eval.io.load_events(str(tmp_path / "beats.txt")), [0.5, 1, 1.5])


def test_beats_jams_positions_count_from_downbeats(tmp_path):
    import jams

    beats = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert outputs.beat_positions(beats, np.array([1.0, 3.0])) == [None, 1, 2, 3, 4, 1]
    ann = outputs.beats_annotation("beats", beats, 4.0, np.array([1.0, 3.0]))
    path = outputs.write_jams(tmp_path / "b.jams", [ann], 4.0)
    back = jams.load(str(path), validate=True).annotations[0]
    assert [o.value for o in back.data] == [None, 1, 2, 3, 4, 1]


def test_compact_multif0_writes_the_same_bytes(tmp_path):
    """Multi-f0 held as uint16 bin indices (`Ragged` over the bins, as `mir.predict` keeps
    it: 2 bytes an f0) writes the CSV, notes and JAMS rows of the float64 f0s, byte for
    byte."""
    rng = np.random.default_rng(0)
    table = 32.7 * 2.0 ** (np.arange(72) / 12)  # a bin grid, Hz
    counts = rng.integers(0, 5, 300)
    bins = [np.sort(rng.choice(72, k, replace=False)) for k in counts]
    bins = [np.clip(b + (i // 7) % 2, 0, 71) for i, b in enumerate(bins)]  # runs of a pitch
    hz = [table[b] for b in bins]
    times = np.arange(300) * 256 / 22050
    flat = outputs.Ragged(np.concatenate(hz), counts)
    idx = outputs.grid_indices(table, np.concatenate(hz))
    assert idx.dtype == np.uint16
    compact = outputs.Ragged(idx, counts.astype(np.uint16), table=table)
    assert compact.values.nbytes * 4 == flat.values.nbytes
    for name, freqs in (("list", hz), ("flat", flat), ("compact", compact)):
        outputs.write_multif0(tmp_path / f"{name}.csv", times, freqs)
        notes = outputs.multif0_to_notes(times, freqs, min_duration=0.02)
        outputs.write_notes_midi(tmp_path / f"{name}.mid", notes)
        rows = outputs.LazyAnnotation(
            "pitch_contour", "multif0", 2.0, lambda f=freqs: outputs.multif0_rows(times, f)
        )
        outputs.write_jams(tmp_path / f"{name}.jams", [rows], 2.0)
    for ext in ("csv", "mid", "jams"):
        want = (tmp_path / f"list.{ext}").read_bytes()
        assert (tmp_path / f"flat.{ext}").read_bytes() == want, ext
        assert (tmp_path / f"compact.{ext}").read_bytes() == want, ext
    with pytest.raises(ValueError, match="off the grid"):
        outputs.grid_indices(table, np.array([100.0]))


def test_onsets_jams_in_time_then_class_order(tmp_path):
    import jams

    classes = ["snare", "kick", "hihat"]
    onsets = [np.array([0.5, 0.25]), np.array([0.5, 0.1]), np.array([0.25, 0.9])]
    ann = outputs.onsets_annotation("drums", classes, onsets, 1.0)
    path = outputs.write_jams(tmp_path / "d.jams", [ann], 1.0)
    back = jams.load(str(path), validate=True).annotations[0]
    want = sorted((float(t), c) for c, ts in zip(classes, onsets, strict=True) for t in ts)
    assert [(o.time, o.value) for o in back.data] == want
    assert [(o.time, o.value) for o in ann.materialise().data] == want
    assert back.namespace == "onset"
    assert back.sandbox.task == "drums"


def _pretty_midi_file(path, notes, program=0, name="", is_drum=False):
    """The MIDI file pretty_midi writes (what `mir.outputs` used before its own writer)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
    inst.notes += [pretty_midi.Note(100, p, float(a), float(b)) for a, b, p in notes]
    pm.instruments.append(inst)
    pm.write(str(path))
    return path.read_bytes()


def test_midi_writer_writes_pretty_midis_bytes(tmp_path):
    rng = np.random.default_rng(1)
    onsets = np.round(rng.uniform(0, 30, 400), 3)
    onsets[:3] = 0.0
    offsets = onsets + rng.choice([0.05, 0.1, 0.5, 1.0], 400)
    hz = 440.0 * 2.0 ** ((rng.integers(40, 80, 400) - 69) / 12)
    hz[10:20] = hz[0]  # same pitch: an end meets a start
    onsets[11] = offsets[10]
    offsets[11] = onsets[11] + 0.1
    notes = [(float(a), float(b), float(h)) for a, b, h in zip(onsets, offsets, hz, strict=True)]
    pitches = [int(np.clip(np.rint(outputs.hz_to_midi(h)), 0, 127)) for h in hz]
    for name, subset in (("melody", notes), ("", notes[:5]), ("x", [])):
        outputs.write_notes_midi(tmp_path / "ours.mid", subset, name=name)
        ref = [(a, b, p) for (a, b, _), p in zip(subset, pitches, strict=False)]
        want = _pretty_midi_file(tmp_path / "ref.mid", ref, name=name)
        assert (tmp_path / "ours.mid").read_bytes() == want, name
    classes = ["kick", "snare", "hihat", "cowbell"]
    hits = [np.sort(rng.uniform(0, 20, k)) for k in (50, 40, 60, 5)]
    hits[1][:3] = hits[0][:3]  # kick and snare together
    _, unmapped = outputs.write_drums_midi(tmp_path / "ours.mid", classes, hits)
    assert unmapped == ["cowbell"]
    ref = [
        (float(t), float(t) + outputs.DRUM_NOTE_SECONDS, key)
        for key, ts in zip((36, 38, 42), hits[:3], strict=True)
        for t in ts
    ]
    want = _pretty_midi_file(tmp_path / "ref.mid", ref, name="drums", is_drum=True)
    assert (tmp_path / "ours.mid").read_bytes() == want


def test_drums_midi_uses_general_midi_channel_10(tmp_path):
    import pretty_midi

    onsets = [np.array([0.1, 0.6]), np.array([0.35]), np.array([0.2]), np.array([0.9])]
    _, unmapped = outputs.write_drums_midi(
        tmp_path / "d.mid", ["kick", "snare", "open_hihat", "cowbell"], onsets
    )
    assert unmapped == ["cowbell"]
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "d.mid"))
    (inst,) = pm.instruments
    assert inst.is_drum
    got = sorted((round(n.start, 3), n.pitch) for n in inst.notes)
    assert got == [(0.1, 36), (0.2, 46), (0.35, 38), (0.6, 36)]
    import mido

    channels = {m.channel for m in mido.MidiFile(str(tmp_path / "d.mid")) if m.type == "note_on"}
    assert channels == {9}  # channel 10, counted from 1


# -- the command on a real checkpoint -------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder with a stereo 44.1 kHz wav, a mono 22.05 kHz flac in a sub-folder, and a
    corrupt wav."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    sr = 44100
    t = np.arange(int(2.3 * sr)) / sr
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(len(t))
    right = 0.3 * np.sin(2 * np.pi * 261.6 * t) + 0.01 * rng.standard_normal(len(t))
    sf.write(root / "stereo.wav", np.stack([left, right], 1).astype(np.float32), sr)
    (root / "sub").mkdir()
    sr = 22050
    t = np.arange(int(1.9 * sr)) / sr
    tone = 0.2 * (np.sin(2 * np.pi * 196 * t) + np.sin(2 * np.pi * 392 * t))
    sf.write(root / "sub" / "mono.flac", tone.astype(np.float32), sr)
    (root / "sub" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio")
    return root


@pytest.fixture(scope="module")
def predicted(trained_ckpt, inputs, tmp_path_factory):  # noqa: F811
    from mir.predict import run

    out = tmp_path_factory.mktemp("predicted")
    counts = run(str(trained_ckpt), str(inputs), str(out))
    return out, counts


def _estimates(module, path: Path) -> dict:
    fe = module.model.frontend
    return module.predict_track(Track(name=path.stem, audio=load_audio(path, fe.sr), sr=fe.sr))


def test_batch_reports_corrupt_file_and_continues(predicted):
    out, (done, skipped, failed) = predicted
    assert (done, skipped, failed) == (2, 0, 1)
    assert (out / "stereo" / "DONE").is_file()
    assert (out / "sub" / "mono" / "DONE").is_file()
    assert not (out / "sub" / "broken" / "DONE").exists()


def test_outputs_match_estimates(predicted, inputs, trained_module):  # noqa: F811
    import jams
    import pretty_midi

    module, _ = trained_module
    out, _ = predicted
    path = inputs / "sub" / "mono.flac"
    est = _estimates(module, path)
    folder = out / "sub" / "mono"

    # melody: CSV, notes
    times, f0 = est["melody"]
    t, f = mir_eval.io.load_time_series(str(folder / "melody.csv"), delimiter=",")
    np.testing.assert_allclose(t, times, atol=1e-6)
    np.testing.assert_allclose(f, f0, atol=1e-4)
    notes = outputs.f0_to_notes(times, f0)
    midi = pretty_midi.PrettyMIDI(str(folder / "melody.mid")).instruments[0].notes
    assert [n.pitch for n in midi] == [round(outputs.hz_to_midi(n[2]).item()) for n in notes]
    np.testing.assert_allclose([n.start for n in midi], [n[0] for n in notes], atol=1e-3)

    # multi-f0: ragged CSV, notes
    times, freqs = est["multif0"]
    t, fs = mir_eval.io.load_ragged_time_series(str(folder / "multif0.csv"))
    np.testing.assert_allclose(t, times, atol=1e-6)
    assert len(fs) == len(freqs)
    for got, want in zip(fs, freqs, strict=True):
        np.testing.assert_allclose(got, np.sort(want), atol=1e-4)
    mnotes = outputs.multif0_to_notes(times, freqs)
    midi = pretty_midi.PrettyMIDI(str(folder / "multif0.mid")).instruments[0].notes
    assert len(midi) == len(mnotes)

    # drums: GM percussion
    pm = pretty_midi.PrettyMIDI(str(folder / "drums.mid"))
    drum_notes = [n for i in pm.instruments for n in i.notes]
    assert all(i.is_drum for i in pm.instruments)
    want = sorted(
        (float(t), outputs.GM_DRUMS[c])
        for c, ts in zip(module.tasks["drums"].classes, est["drums"], strict=True)
        for t in ts
    )
    got = sorted((n.start, n.pitch) for n in drum_notes)
    assert [p for _, p in got] == [p for _, p in want]
    np.testing.assert_allclose([t for t, _ in got], [t for t, _ in want], atol=1e-3)

    # tags
    tags = json.loads((folder / "tagging.json").read_text())
    scores = np.array([tags["scores"][t] for t in module.tasks["tagging"].tags])
    np.testing.assert_allclose(scores, est["tagging"], atol=1e-12)
    tops = [x["score"] for x in tags["top"]]
    assert tops == sorted(tops, reverse=True)
    assert tops[0] == pytest.approx(est["tagging"].max())

    # stems: a mono file at the model's rate gives exactly the separation estimate
    for i, source in enumerate(module.tasks["separation"].sources):
        audio, sr = sf.read(folder / f"{source}.wav", dtype="float32")
        assert sr == 22050
        assert audio.ndim == 1
        assert len(audio) == sf.info(path).frames
        np.testing.assert_allclose(audio, est["separation"][i], atol=1e-5)

    # JAMS: schema-valid, every annotation, the same values
    jam = jams.load(str(folder / "mono.jams"), validate=True)
    by_task = {(a.sandbox.task, a.namespace): a for a in jam.annotations}
    assert set(by_task) == {
        ("melody", "pitch_contour"),
        ("melody", "note_hz"),
        ("multif0", "pitch_contour"),
        ("multif0", "note_hz"),
        ("drums", "onset"),
        ("tagging", "tag_open"),
    }
    contour = by_task["melody", "pitch_contour"].data
    np.testing.assert_allclose([o.value["frequency"] for o in contour], est["melody"][1])
    assert len(by_task["multif0", "pitch_contour"].data) == sum(len(f) for f in freqs)
    assert len(by_task["drums", "onset"].data) == sum(len(x) for x in est["drums"])
    conf = {o.value: o.confidence for o in by_task["tagging", "tag_open"].data}
    want_tags = dict(zip(module.tasks["tagging"].tags, est["tagging"], strict=True))
    assert conf == pytest.approx(want_tags)


def test_stereo_input_keeps_rate_length_and_channels(predicted, inputs, trained_module):  # noqa: F811
    module, _ = trained_module
    out, _ = predicted
    info = sf.info(inputs / "stereo.wav")
    for source in module.tasks["separation"].sources:
        got = sf.info(out / "stereo" / f"{source}.wav")
        assert (got.samplerate, got.channels, got.frames) == (44100, 2, info.frames)
    # the f0 track is the downmix's, resampled to the model's rate
    est = _estimates(module, inputs / "stereo.wav")
    _, f = mir_eval.io.load_time_series(str(out / "stereo" / "melody.csv"), delimiter=",")
    np.testing.assert_allclose(f, est["melody"][1], atol=1e-4)


def test_rerun_skips_finished_and_overwrite_redoes(predicted, trained_ckpt, inputs, capsys):  # noqa: F811
    from mir.predict import run

    out, _ = predicted
    done = out / "stereo" / "DONE"
    before = done.stat().st_mtime_ns
    assert run(str(trained_ckpt), str(inputs), str(out)) == (0, 2, 1)
    assert done.stat().st_mtime_ns == before
    assert "broken.wav" in capsys.readouterr().err
    assert run(str(trained_ckpt), str(inputs / "stereo.wav"), str(out), overwrite=True) == (1, 0, 0)
    assert done.stat().st_mtime_ns != before
    assert json.loads(done.read_text())["input"].endswith("stereo.wav")


def test_cli_missing_checkpoint_is_one_line(inputs, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mir.predict",
            f"ckpt={tmp_path / 'nope.ckpt'}",
            f"input={inputs}",
            f"output={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {tmp_path / 'nope.ckpt'}: checkpoint file does not exist"]


def test_cli_rejects_bad_arguments(capsys, tmp_path):
    from mir.predict import main

    assert main(["ckpt=x.ckpt", "inputs=y"]) == 2
    assert main(["ckpt"]) == 2
    assert main([f"ckpt={tmp_path}/x", f"input={tmp_path}/missing", "output=o"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert all(line.startswith("error: ") for line in err)
    assert "unknown argument 'inputs'" in err[0]
    assert "does not exist" in err[2]


# -- inputs never collide, changed inputs are redone, temp files never count ----------------
def _tone(path: Path, hz: float, seconds: float = 1.0, sr: int = 22050) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32), sr)
    return path


def test_output_names_are_unique_per_input(tmp_path):
    from mir.predict import find_inputs

    for name in ("a.wav", "a.flac", "a_wav.wav", "b.wav", "B.ogg", "c.wav"):
        _tone(tmp_path / name, 220)
    (tmp_path / "c").mkdir()
    _tone(tmp_path / "c" / "DONE.wav", 330)
    names = dict((p.relative_to(tmp_path).as_posix(), n) for p, n in find_inputs(tmp_path))
    assert names["a_wav.wav"] == "a_wav"
    assert names["c/DONE.wav"] == "c/DONE"
    for rel in ("a.wav", "a.flac", "b.wav", "B.ogg", "c.wav"):  # shared or nesting: hashed
        stem, ext = rel.rsplit(".", 1)
        assert re.fullmatch(rf"{stem}_{ext}-[0-9a-f]{{8}}", names[rel]), names
    assert len({n.casefold() for n in names.values()}) == len(names)


def test_colliding_inputs_are_all_analysed(trained_ckpt, tmp_path):  # noqa: F811
    from mir.predict import run

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    files = [_tone(src / n, hz) for n, hz in (("a.wav", 220), ("a.flac", 330), ("a_wav.wav", 440))]
    (src / "a").mkdir()
    files.append(_tone(src / "a" / "DONE.wav", 550))  # a folder named like a.wav's outputs
    assert run(str(trained_ckpt), str(src), str(out)) == (4, 0, 0)
    markers = [json.loads(p.read_text()) for p in out.rglob("DONE") if p.is_file()]
    assert sorted(m["input"] for m in markers) == sorted(str(f.resolve()) for f in files)


def test_changed_input_is_redone_and_temp_files_are_cleared(trained_ckpt, tmp_path):  # noqa: F811
    import os

    from mir.predict import run

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    a, b = _tone(src / "a.wav", 220), _tone(src / "b.wav", 330)
    assert run(str(trained_ckpt), str(src), str(out)) == (2, 0, 0)
    assert run(str(trained_ckpt), str(src), str(out)) == (0, 2, 0)
    _tone(a, 440, seconds=1.5)  # new content, new size
    st = b.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same size, touched
    # what a run killed mid-write leaves, in this version's and the old naming
    stale = [out / "a" / ".vocals.wav.k2j_9x0q.tmp", out / "b" / ".vocals.wav.ab3d_fgh.wav"]
    for p in stale:
        p.write_bytes(b"half")
    keep = out / "a" / ".notes.wav"
    keep.write_bytes(b"user file")
    assert run(str(trained_ckpt), str(src), str(out)) == (2, 0, 0)
    assert not any(p.exists() for p in stale)
    assert keep.exists()
    assert json.loads((out / "a" / "DONE").read_text())["size"] == a.stat().st_size


def test_temp_files_never_look_like_audio(tmp_path):
    from mir.audio import atomic_write

    seen = []

    def write(tmp: str) -> None:
        seen.append(Path(tmp).name)
        Path(tmp).write_bytes(b"x")

    atomic_write(tmp_path / "vocals.wav", write)
    assert seen[0].startswith(".vocals.wav.")
    assert seen[0].endswith(".tmp")
    assert (tmp_path / "vocals.wav").read_bytes() == b"x"


def test_streamed_file_equals_the_whole_track_computation(trained_module, tmp_path, monkeypatch):  # noqa: F811
    """Many small chunks and read blocks (and a resampled stereo input): the stems, f0 and
    multi-f0 written block by block equal what the whole-track computation gives."""
    import mir.predict
    from mir.audio import fit_length, resample
    from mir.predict import predict_file, separate_channels

    monkeypatch.setattr(mir.predict, "BLOCK_SECONDS", 0.45)

    module, _ = trained_module
    sr = 44100
    rng = np.random.default_rng(3)
    t = np.arange(int(4.1 * sr)) / sr
    left = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(len(t))
    right = 0.2 * np.sin(2 * np.pi * 196 * t) + 0.05 * rng.standard_normal(len(t))
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([left, right], 1).astype(np.float32), sr)
    saved = module.chunk_seconds, module.margin_seconds
    module.chunk_seconds, module.margin_seconds = 0.6, 0.4  # 7 chunks
    try:
        predict_file(module, path, tmp_path / "out")
        fe = module.model.frontend
        mono = load_audio(path, fe.sr)
        raw = module.infer(Track(name="long", audio=mono, sr=fe.sr))
    finally:
        module.chunk_seconds, module.margin_seconds = saved
    native = load_audio(path, sr, mono=False)
    channels = fit_length(resample(native, sr, fe.sr), len(mono))
    task = module.tasks["separation"]
    stems = separate_channels(task, raw["separation"], channels)  # (S, C, N')
    stems = fit_length(np.stack([resample(s, fe.sr, sr) for s in stems]), native.shape[1])
    for i, source in enumerate(task.sources):
        got, got_sr = sf.read(tmp_path / "out" / f"{source}.wav", dtype="float32")
        assert got_sr == sr
        assert got.shape == (native.shape[1], 2)
        np.testing.assert_allclose(got.T, stems[i], atol=2e-5)
    track = Track(name="long", audio=mono, sr=fe.sr)
    _, f0 = module.tasks["melody"].decode(raw["melody"], track)
    _, f = mir_eval.io.load_time_series(str(tmp_path / "out" / "melody.csv"), delimiter=",")
    np.testing.assert_allclose(f, f0, atol=1e-4)
    _, freqs = module.tasks["multif0"].decode(raw["multif0"], track)
    _, fs = mir_eval.io.load_ragged_time_series(str(tmp_path / "out" / "multif0.csv"))
    assert len(fs) == len(freqs)
    for got, want in zip(fs, freqs, strict=True):
        np.testing.assert_allclose(got, np.sort(want), atol=1e-4)


def test_analyse_equals_the_plain_model_decoded_whole(trained_module):  # noqa: F811
    """`MirModule.analyse` (fused fast path, decoded chunk by chunk: what `mir.predict`,
    `mir.evaluate`, validation and test use) gives the estimates of the unfused model (what
    `mir.predict` ran before) over the same chunks, concatenated and decoded whole by
    `Task.decode`, and its raw outputs are that model's."""
    from mir.inference import infer_track

    module, _ = trained_module
    sr = module.model.frontend.sr
    t = np.arange(int(3.7 * sr)) / sr
    rng = np.random.default_rng(5)
    audio = (0.3 * np.sin(2 * np.pi * 247 * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )
    track = Track(name="x", audio=audio, sr=sr)
    kinds = {n: task.output_kind for n, task in module.tasks.items()}
    whole = infer_track(module.model, audio, kinds, 0.7, 0.4, fast=False)
    want = {n: task.decode(whole[n], track) for n, task in module.tasks.items()}
    saved = module.chunk_seconds, module.margin_seconds
    module.chunk_seconds, module.margin_seconds = 0.7, 0.4
    try:
        raw, got = module.analyse(track, raw=list(module.tasks))
        assert module.predict_track(track).keys() == got.keys()
    finally:
        module.chunk_seconds, module.margin_seconds = saved
    assert set(got) == set(want) == set(raw)
    for name in raw:
        assert raw[name].shape == whole[name].shape
        np.testing.assert_allclose(raw[name], whole[name], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got["separation"], want["separation"], atol=1e-5)
    np.testing.assert_array_equal(got["melody"][1], want["melody"][1])
    np.testing.assert_array_equal(got["melody"][0], want["melody"][0])
    assert len(got["multif0"][1]) == len(want["multif0"][1])
    for a, b in zip(got["multif0"][1], want["multif0"][1], strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got["drums"], want["drums"], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got["tagging"], want["tagging"], atol=1e-6)


def test_unet_separation_reads_and_resamples_the_file_once(compose, tmp_path, monkeypatch):
    """The U-Net separation, whose decoding reads the whole track, takes its audio from the
    one streamed pass (`mir.audio.load_audio` is never called) and writes the stems that
    the whole file, loaded and resampled at once, gives."""
    import mir.audio
    from mir.audio import fit_length, resample
    from mir.predict import predict_file, separate_channels
    from mir.train import instantiate

    cfg = compose(
        ["experiment=jansson_unet", "task.separation.unet.channels=[4,4,4,4,4,4]"], tmp_path
    )
    module = instantiate(cfg.model).eval()
    task, sr = module.tasks["separation"], module.model.frontend.sr
    rng = np.random.default_rng(3)
    x = (0.2 * rng.standard_normal((int(2.5 * 44100), 2))).astype(np.float32)
    path = tmp_path / "st.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    mono = load_audio(path, sr=sr)
    chans = fit_length(resample(load_audio(path, sr=44100, mono=False), 44100, sr), len(mono))
    raw = module.infer(Track(name="st", audio=mono, sr=sr))["separation"]
    stems = separate_channels(task, raw, chans)
    want = fit_length(np.stack([resample(s, sr, 44100) for s in stems]), len(x))

    def no_second_read(*args, **kwargs):
        raise AssertionError("the input was read a second time")

    monkeypatch.setattr(mir.audio, "load_audio", no_second_read)
    predict_file(module, path, tmp_path / "out")
    for k, source in enumerate(task.sources):
        got, rate = sf.read(tmp_path / "out" / f"{source}.wav", dtype="float32")
        assert rate == 44100
        assert got.shape == x.shape
        np.testing.assert_allclose(got, want[k].T, atol=1e-4)


def test_unet_separation_is_streamed_and_equals_the_whole_track(compose, tmp_path, monkeypatch):
    """The Jansson U-Net (``fullband``) in many chunks: its stems are written block by block
    from a window of held masks that does not grow with the track, and equal the stems of
    its whole-track masks; a window of the held masks gives `stft_masks` to the bit."""
    import torch

    import mir.predict
    from mir.audio import fit_length, resample
    from mir.predict import predict_file, separate_channels
    from mir.streams import SeparationStream
    from mir.train import instantiate

    cfg = compose(
        ["experiment=jansson_unet", "task.separation.unet.channels=[4,4,4,4,4,4]"], tmp_path
    )
    module = instantiate(cfg.model).eval()
    module.chunk_seconds, module.margin_seconds = 0.7, 0.5  # 9 chunks
    monkeypatch.setattr(mir.predict, "BLOCK_SECONDS", 0.45)
    task, fe = module.tasks["separation"], module.model.frontend
    rng = np.random.default_rng(4)
    n_in = int(6.1 * 44100)
    t = np.arange(n_in) / 44100
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 196 * t)], 1)
    x = (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
    path = tmp_path / "st.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    mono = load_audio(path, sr=fe.sr)
    chans = fit_length(resample(load_audio(path, sr=44100, mono=False), 44100, fe.sr), len(mono))
    raw = module.infer(Track(name="st", audio=mono, sr=fe.sr))["separation"]  # same chunks
    want = separate_channels(task, raw, chans)
    want = fit_length(np.stack([resample(s, fe.sr, 44100) for s in want]), n_in)

    held_frames = []
    feed = SeparationStream.feed

    def recording_feed(self, f0, f1, out):
        feed(self, f0, f1, out)
        held_frames.append(self.masks.shape[2])

    monkeypatch.setattr(SeparationStream, "feed", recording_feed)
    predict_file(module, path, tmp_path / "out")
    n_frames = raw.shape[-1]
    core = round(module.chunk_seconds * fe.sr / fe.hop)
    m = fe.n_fft // fe.hop + 1
    assert len(held_frames) == 9
    assert max(held_frames) <= core + 2 * (2 * m + task.unet.reach) < n_frames / 2
    for k, source in enumerate(task.sources):
        got, rate = sf.read(tmp_path / "out" / f"{source}.wav", dtype="float32")
        assert (rate, got.shape) == (44100, x.shape)
        np.testing.assert_allclose(got, want[k].T, atol=2e-5)

    held = torch.from_numpy(raw)
    whole = task.unet.stft_masks(held, len(mono), 40, 90)
    window = task.unet.stft_masks(held[..., 25:110], len(mono), 40, 90, 25, n_frames)
    torch.testing.assert_close(window, whole, rtol=0, atol=0)


# -- the Hydra apps: conf/predict.yaml, conf/evaluate.yaml, conf/export.yaml -----------------
def test_predict_app_writes_only_its_output_in_the_working_folder(
    trained_ckpt,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    """A run of the Hydra app leaves no outputs/, .hydra/ or log file in the caller's folder;
    relative paths are read from that folder (no chdir)."""
    from mir.predict import main

    monkeypatch.chdir(tmp_path)
    _tone(tmp_path / "a.wav", 220.0)
    assert main([f"ckpt={trained_ckpt}", "input=a.wav", "output=out"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "out"]
    assert (tmp_path / "out" / "a" / "DONE").is_file()
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    for key in ("ckpt: null", "input: null", "output: null", "top_k: 5", "min_note: 0.05"):
        assert key in help_text


def test_apps_sweep_over_checkpoints_with_one_line_errors(tmp_path, monkeypatch, capsys):
    """``-m ckpt=a,b`` runs one job per checkpoint (each failing on its own line) in each of
    the three apps; the exit status is the worst job's."""
    from mir.evaluate import main as evaluate
    from mir.export import main as export
    from mir.predict import main as predict

    monkeypatch.chdir(tmp_path)
    wav = _tone(tmp_path / "a.wav", 220.0)
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    assert predict(["-m", f"ckpt={a},{b}", f"input={wav}", "output=o"]) == 2
    assert evaluate(["-m", f"ckpt={a},{b}", "data=embedded"]) == 2
    assert export(["--multirun", f"ckpt={a},{b}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    want = [f"error: {c}: checkpoint file does not exist" for c in (a, b)]
    assert [line for line in err if line.startswith("error:")] == want * 3


def test_notes_are_compact_arrays_in_onset_then_pitch_order():
    """Note segmentation returns (n, 3) float64 arrays (24 bytes a note, no Python tuples,
    so a 3-hour track's notes stay small), multi-f0 notes sorted by onset then Hz."""
    from mir.outputs import f0_to_notes, multif0_to_notes, notes_rows

    t = np.arange(100) * 0.01
    notes = multif0_to_notes(
        t, [np.array([440.0, 220.0]) if x < 0.5 else np.array([330.0]) for x in t]
    )
    assert isinstance(notes, np.ndarray)
    assert notes.dtype == np.float64
    np.testing.assert_allclose(notes, [[0, 0.5, 220], [0, 0.5, 440], [0.5, 1.0, 330]])
    single = f0_to_notes(t, np.where(t < 0.3, 440.0, np.where(t < 0.32, 0.0, 220.0)))
    np.testing.assert_allclose(single, [[0, 0.3, 440], [0.32, 1.0, 220]])
    assert f0_to_notes(t, np.zeros(100)).shape == (0, 3)
    rows = list(notes_rows(notes))
    assert [type(r["time"]) for r in rows] == [float] * 3  # JSON-ready, as before
    assert rows[2] == {"time": 0.5, "duration": 0.5, "value": 330.0, "confidence": None}


def test_int8_precision_writes_the_same_files_and_close_f0(trained_ckpt, inputs, tmp_path):  # noqa: F811
    """`precision=int8` runs the int8 inference copy: the same files and frame times as
    float32, the same voicing on most frames, and not the float32 numbers (the smoke model's
    salience is nearly flat, so its argmax pitches move; accuracy on trained models is in
    tests/test_int8.py); a bad precision is one line."""
    from mir.errors import ConfigError
    from mir.predict import parse_precision, run

    src = inputs / "sub" / "mono.flac"
    out32, out8 = tmp_path / "f32", tmp_path / "i8"
    assert run(str(trained_ckpt), str(src), str(out32)) == (1, 0, 0)
    assert run(str(trained_ckpt), str(src), str(out8), precision="int8") == (1, 0, 0)
    files32 = sorted(p.name for p in (out32 / "mono").iterdir())
    assert files32 == sorted(p.name for p in (out8 / "mono").iterdir())
    a = np.loadtxt(out32 / "mono" / "melody.csv", delimiter=",", skiprows=1)
    b = np.loadtxt(out8 / "mono" / "melody.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(a[:, 0], b[:, 0])
    assert np.mean((a[:, 1] > 0) == (b[:, 1] > 0)) >= 0.9
    assert not np.array_equal(a[:, 1], b[:, 1])  # the int8 copy did run
    with pytest.raises(ConfigError, match=r"^precision='fp8' must be one of float32, bf16, int8$"):
        parse_precision("fp8", None)
