"""Bad input gives one clear line naming the file and the problem."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mir.audio import load_audio, write_wav
from mir.errors import AudioError

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "mir.train", *args, f"hydra.run.dir={cwd}/run"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_missing_audio(tmp_path):
    with pytest.raises(AudioError, match="nothere.wav: audio file does not exist"):
        load_audio(tmp_path / "nothere.wav", 22050)


def test_corrupt_audio(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    with pytest.raises(AudioError, match="bad.wav: cannot read audio"):
        load_audio(bad, 22050)


def test_unreadable_mp3_names_the_decoder_it_needs(tmp_path):
    bad = tmp_path / "clip.mp3"
    bad.write_bytes(b"ID3 not really an mp3")
    with pytest.raises(AudioError, match=r"clip\.mp3: cannot read audio .*mp3 needs libsndfile"):
        load_audio(bad, 22050)


def test_wrong_sample_rate_and_silence_and_short(tmp_path):
    p = tmp_path / "x.wav"
    sf.write(p, np.zeros(1000, dtype=np.float32), 44100)
    with pytest.raises(AudioError, match="x.wav: sample rate is 44100 Hz, expected 22050 Hz"):
        load_audio(p, 22050, expect_sr=22050)
    with pytest.raises(AudioError, match="x.wav: audio is silent"):
        load_audio(p, 22050, allow_silence=False)
    with pytest.raises(AudioError, match="shorter than the minimum of 4096"):
        load_audio(p, 22050, min_samples=4096)


def test_stereo_is_downmixed_and_resampled(tmp_path):
    p = tmp_path / "s.wav"
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1)
    sf.write(p, stereo.astype(np.float32), 44100)
    y = load_audio(p, 22050)
    assert y.shape == (22050,)
    assert abs(np.abs(y).max() - 0.5) < 0.02  # mean of the two channels


def test_write_wav_is_atomic(tmp_path):
    p = tmp_path / "out.wav"
    write_wav(p, np.ones(100, dtype=np.float32) * 0.1, 22050)
    assert p.is_file()
    assert not list(tmp_path.glob(".out.wav*"))
    y, sr = sf.read(p)
    assert sr == 22050
    assert len(y) == 100


def test_cli_unknown_task(tmp_path):
    r = run_cli("task=nonexistent", cwd=tmp_path)
    assert r.returncode != 0
    assert "Could not find 'task/nonexistent'" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_missing_dataset_path(tmp_path):
    r = run_cli(
        "task=melody",
        "data=medleydb",
        f"data.datasets.medleydb.root={tmp_path}/nope",
        "logger=[csv]",
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr[-2000:]
    assert "nope does not exist" in lines[0]
    assert "Traceback" not in r.stderr


def test_cli_tagging_without_vocabulary(tmp_path):
    r = run_cli(
        "task=tagging",
        "data=bach10",
        f"data.datasets.bach10.root={tmp_path}",
        "logger=[csv]",
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert "no tag vocabulary" in r.stderr
    assert "Traceback" not in r.stderr


# -- mir.predict: inputs and destinations, refused before any work --------------------------
def _wav(path: Path, seconds: float = 0.5, sr: int = 22050) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


def _predict_error(**kwargs) -> str:
    from mir.errors import ConfigError
    from mir.predict import run

    with pytest.raises(ConfigError) as info:
        run(**{"ckpt": "never-opened.ckpt", **kwargs})
    return str(info.value)


def test_predict_output_is_input(tmp_path):
    _wav(tmp_path / "a.wav")
    msg = _predict_error(input=str(tmp_path), output=str(tmp_path))
    assert msg == f"output {tmp_path} is the input folder; choose another output folder"


def test_predict_input_inside_output(tmp_path):
    _wav(tmp_path / "out" / "in" / "a.wav")
    msg = _predict_error(input=str(tmp_path / "out" / "in"), output=str(tmp_path / "out"))
    assert msg == f"input {tmp_path / 'out' / 'in'} is inside the output folder {tmp_path / 'out'}"


def test_predict_input_symlink_loop(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    msg = _predict_error(input=str(loop), output=str(tmp_path / "out"))
    assert msg == f"input {loop} is a symbolic link loop"


def test_predict_inputs_that_cannot_be_told_apart(tmp_path, monkeypatch):
    import mir.predict

    a, b = _wav(tmp_path / "in" / "a.wav"), _wav(tmp_path / "in" / "a.flac")
    monkeypatch.setattr(mir.predict, "_hashed", lambda rel: "same")  # a forced hash collision
    msg = _predict_error(input=str(tmp_path / "in"), output=str(tmp_path / "out"))
    assert msg == f"inputs {b} and {a} would share the output folder same"


# -- data is checked before it is used ------------------------------------------------------
def test_truncated_wav_warns_with_both_lengths_or_fails_when_strict(tmp_path, caplog):
    full, cut = tmp_path / "full.wav", tmp_path / "cut.wav"
    write_wav(full, 0.1 * np.ones(22050, dtype=np.float32), 22050)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) - 4 * 11025])  # the header still declares 22050 samples
    with caplog.at_level("WARNING", logger="mir.audio"):
        assert len(load_audio(full, 22050)) == 22050
        assert not caplog.records
        assert len(load_audio(cut, 22050)) == 11025
    (record,) = caplog.records
    assert record.getMessage() == (
        f"{cut}: the header declares 22050 samples but the file holds only 11025 (truncated?)"
    )
    with pytest.raises(AudioError, match=r"cut\.wav: the header declares 22050 samples"):
        load_audio(cut, 22050, strict=True)


def test_strict_is_a_process_setting(tmp_path):
    from mir.audio import set_strict

    cut = tmp_path / "cut.wav"
    write_wav(tmp_path / "full.wav", np.ones(1000, dtype=np.float32), 22050)
    cut.write_bytes((tmp_path / "full.wav").read_bytes()[:-400])
    set_strict(True)
    try:
        with pytest.raises(AudioError, match="holds only 900"):
            load_audio(cut, 22050)
    finally:
        set_strict(False)
    assert len(load_audio(cut, 22050)) == 900


@pytest.fixture(scope="module")
def one_piece(tmp_path_factory):
    from mir.data.embedded import EmbeddedDataset

    ds = EmbeddedDataset(root=str(tmp_path_factory.mktemp("cache")), n_pieces=1, max_duration=3)
    (tid,) = ds._ensure()
    return ds, tid, ds.load(tid)


@pytest.mark.parametrize("damage", ["cut_mix", "noise_mix", "noise_stem", "annotations"])
def test_damaged_render_cache_is_rendered_again(one_piece, damage, caplog):
    ds, tid, good = one_piece
    folder = ds.cache_dir / tid
    rng = np.random.default_rng(0)
    if damage == "cut_mix":  # half the samples, a valid header: reads as a shorter mix
        write_wav(folder / "mix.wav", good.audio[: len(good.audio) // 2], ds.sr)
    elif damage == "noise_mix":  # same length, other content
        write_wav(folder / "mix.wav", 0.1 * rng.standard_normal(len(good.audio)), ds.sr)
    elif damage == "noise_stem":
        stem = next(iter(sorted((folder / "stems").glob("*.wav"))))
        write_wav(stem, 0.1 * rng.standard_normal(len(good.audio)), ds.sr)
    else:
        text = (folder / "annotations.json").read_text()
        (folder / "annotations.json").write_text(text.replace('"beats": [', '"beats": [0.0, '))
    with caplog.at_level("WARNING", logger="mir.data.embedded"):
        again = ds.load(tid)
    assert any(
        f"embedded piece {tid}:" in r.getMessage() and "rendering it again" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    np.testing.assert_array_equal(again.audio, good.audio)
    np.testing.assert_array_equal(again.get("beats"), good.get("beats"))
    for name, x in good.get("stems").items():
        np.testing.assert_array_equal(again.get("stems")[name], x)


def test_damaged_piece_is_checked_when_the_index_rebuilds_its_entry(
    one_piece, tmp_path, monkeypatch, caplog
):
    """Training reads windows through the track index, not `load`: a piece damaged after the
    index was built is checked (and rendered again) when the index sees its files change."""
    from mir.data.index import build_index, read_window

    monkeypatch.setenv("MIR_CACHE", str(tmp_path))
    ds, tid, good = one_piece
    split = ds._ensure()[tid]
    build_index(ds, "embedded", split)
    folder = ds.cache_dir / tid
    noise = 0.1 * np.random.default_rng(1).standard_normal(len(good.audio))
    write_wav(folder / "mix.wav", noise, ds.sr)  # same length and header, other content
    with caplog.at_level("WARNING", logger="mir.data.embedded"):
        (entry,) = build_index(ds, "embedded", split)
    assert any("rendering it again" in r.getMessage() for r in caplog.records)
    window = read_window(entry, "mixture", 0, entry.n_samples)
    np.testing.assert_array_equal(window, good.audio)


def test_damaged_piece_is_refused_naming_it(one_piece):
    from mir.data.embedded import CorruptPiece, read_piece

    ds, tid, good = one_piece
    folder = ds.cache_dir / tid
    write_wav(folder / "mix.wav", good.audio[:100], ds.sr)
    with pytest.raises(CorruptPiece) as info:
        read_piece(folder, tid, ds.sr, "train")
    assert str(info.value) == (
        f"embedded piece {tid}: {folder / 'mix.wav'} has 100 samples, the render had "
        f"{len(good.audio)}"
    )
    with pytest.raises(CorruptPiece, match=f"embedded piece {tid}: rendered at 22050 Hz, read at"):
        read_piece(folder, tid, 16000, "train")
    assert len(ds.load(tid).audio) == len(good.audio)  # and the dataset renders it again


# -- a run dir has one writer; resuming needs something to resume --------------------------
def test_second_training_in_a_run_dir_refuses_naming_the_pid(compose, tmp_path):
    from mir.errors import ConfigError
    from mir.train import LOCK, run

    holder = subprocess.Popen(  # another training holding the run dir's lock
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(tmp_path / LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = compose(["task=melody", "trainer=smoke"], tmp_path)
        with pytest.raises(ConfigError) as info:
            run(cfg)
        assert str(info.value) == (
            f"run dir {tmp_path} is in use by another training (PID {holder.pid}, lock "
            f"{tmp_path / LOCK}); wait for it to finish or choose another hydra.run.dir"
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK]  # nothing else written
    finally:
        holder.kill()
        holder.wait()


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding `folder`'s training lock (as a running training does)."""
    from mir.train import LOCK

    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(folder / LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_busy_run_dir_is_refused_before_hydra_writes_in_it(tmp_path, multirun):
    # Hydra creates the run dir and writes .hydra/ and the log file before the task
    # function runs; the lock is taken by a Hydra callback before that.
    from mir.train import LOCK

    busy = tmp_path / "busy"
    holder = _hold_lock(busy)
    try:
        mode = ["-m", f"hydra.sweep.dir={busy}"] if multirun else [f"hydra.run.dir={busy}"]
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "mir.train",
                *mode,
                "task=melody",
                "trainer=smoke",
                "frontend=tiny",
                "model=tiny",
                "logger=[csv]",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 2, r.stderr[-3000:]
        assert r.stderr.strip().splitlines()[-1] == (
            f"error: run dir {busy} is in use by another training (PID {holder.pid}, lock "
            f"{busy / LOCK}); wait for it to finish or choose another hydra.run.dir"
        )
        assert sorted(p.name for p in busy.iterdir()) == [LOCK]  # no .hydra/, log, multirun.yaml
        assert (busy / LOCK).read_text().strip() == str(holder.pid)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # no outputs/ either
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_released_by_a_finished_or_killed_run(tmp_path):
    from mir.train import LOCK, run_dir_lock

    with run_dir_lock(tmp_path):
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
    with run_dir_lock(tmp_path):  # released on exit: a later run in the same dir may start
        pass
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fcntl, os, signal\n"
            f"fd = os.open({str(tmp_path / LOCK)!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n",
        ],
        timeout=60,
    )
    assert killed.returncode == -9
    with run_dir_lock(tmp_path):  # a killed holder leaves no stale lock
        pass


def test_ckpt_path_last_needs_a_last_checkpoint(compose, tmp_path):
    from mir.errors import ConfigError
    from mir.train import resolve_ckpt, run

    cfg = compose(["task=melody", "trainer=smoke", "ckpt_path=last"], tmp_path)
    with pytest.raises(ConfigError) as info:
        run(cfg)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert str(info.value) == (
        f"ckpt_path=last: {last} does not exist; use ckpt_path=last_or_new to start from "
        "scratch when there is nothing to resume"
    )
    assert not any(tmp_path.iterdir()), "refused before writing anything"
    assert resolve_ckpt("last_or_new", tmp_path) is None


# -- arguments and destinations are checked before any work ---------------------------------
@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("min_note=abc", "min_note='abc' must be a number >= 0"),
        ("min_note=-0.1", "min_note=-0.1 must be a number >= 0"),
        ("top_k=-3", "top_k=-3 must be an integer >= 0"),
        ("top_k=2.5", "top_k=2.5 must be an integer >= 0"),
        ("overwrite=maybe", "overwrite='maybe' must be true or false"),
        ("strict=1", "strict=1 must be true or false"),
        ("device=gpu7", "device='gpu7' is not a torch device"),
    ],
)
def test_predict_arguments_are_checked_before_the_checkpoint(tmp_path, capsys, arg, message):
    from mir.predict import main

    wav = _wav(tmp_path / "a.wav")
    argv = [f"ckpt={tmp_path / 'missing.ckpt'}", f"input={wav}", f"output={tmp_path / 'o'}", arg]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {message}"), line
    assert not (tmp_path / "o").exists()


def test_predict_output_under_a_file(tmp_path):
    wav = _wav(tmp_path / "a.wav")
    msg = _predict_error(input=str(wav), output=str(wav / "out"))
    assert msg == f"output {wav / 'out'}: a part of it is a file, not a folder"
    msg = _predict_error(input=str(tmp_path), output=str(wav))
    assert msg == f"output {wav}: {wav} is a file, not a folder"


def test_unwritable_output_is_named_before_any_work(tmp_path, monkeypatch):
    wav = _wav(tmp_path / "a.wav")
    real = os.access
    monkeypatch.setattr(  # as for a user without write permission (the tests may run as root)
        os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode)
    )
    out = tmp_path / "new" / "out"
    msg = _predict_error(input=str(wav), output=str(out))
    assert msg == f"output {out}: permission denied (cannot write to {tmp_path})"


def test_output_symlink_loop_is_named(tmp_path):
    wav = _wav(tmp_path / "a.wav")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    msg = _predict_error(input=str(wav), output=str(tmp_path / "loop" / "out"))
    assert "is a symbolic link loop" in msg


def test_evaluate_checks_arguments_and_output_before_loading(tmp_path, capsys):
    from mir.evaluate import main

    (tmp_path / "taken").write_text("a file")
    missing = tmp_path / "missing.ckpt"
    cases = [
        (["split=dev"], "unknown split 'dev'"),
        ([f"output={tmp_path / 'taken'}"], f"output {tmp_path / 'taken'}: "),
        (["baselines=yes please"], "baselines='yes please' must be true or false"),
        (["data.max_eval_tracks=abc"], "data.max_eval_tracks='abc' must be an integer >= 1"),
        (["data.nonsense.key=1"], "data overrides: "),
    ]
    for extra, message in cases:
        assert main([f"ckpt={missing}", "data=embedded", *extra]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: {message}"), line
    assert main([f"ckpt={missing}", "data=embedded", f"output={tmp_path / 'e'}"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: checkpoint file does not exist"


def test_export_never_overwrites_its_checkpoint(tmp_path):
    from mir.errors import ConfigError
    from mir.export import run

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"pretend checkpoint")
    with pytest.raises(ConfigError, match="would overwrite the checkpoint"):
        run(str(ckpt))  # the default output is the checkpoint's name with .pt
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"output folder .*file is a file, not a folder"):
        run(str(ckpt), str(tmp_path / "file" / "m.pt"))
    assert ckpt.read_bytes() == b"pretend checkpoint"


def test_train_settings_are_checked_with_one_line(tmp_path):
    r = run_cli("task=melody", "trainer.max_epochs=abc", "logger=[csv]", cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == (
        "error: trainer.max_epochs='abc' must be an integer >= -1 or null"
    )
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=2.5", "trainer.max_epochs=2.5 must be an integer >= -1 or null"),
        ("trainer.limit_train_batches=-1", "trainer.limit_train_batches=-1 must be null, a num"),
        ("data.batch_size=0", "data.batch_size=0 must be an integer >= 1"),
        ("data.crop_seconds=abc", "data.crop_seconds='abc' must be a number > 0"),
        ("model.optimizer.lr=-1e-3", "model.optimizer.lr=-0.001 must be a number > 0"),
        ("seed=x", "seed='x' must be an integer >= 0"),
    ],
)
def test_train_settings_types_and_ranges(compose, tmp_path, override, message):
    from mir.errors import ConfigError
    from mir.train import run

    cfg = compose(["task=melody", "trainer=smoke", override], tmp_path)
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        run(cfg)
    assert not any(tmp_path.iterdir())


def test_dataset_hint_is_an_override_hydra_accepts(compose, tmp_path, monkeypatch):
    from mir.data.medleydb import MedleyDB
    from mir.errors import DatasetError

    monkeypatch.delenv("MEDLEYDB_PATH", raising=False)
    with pytest.raises(DatasetError) as info:
        MedleyDB(root=None)
    hint = re.search(r"set (\S+)=<folder>", str(info.value)).group(1)
    assert hint == "data.datasets.medleydb.root"
    cfg = compose(["data=medleydb", f"{hint}={tmp_path}"], tmp_path)
    assert cfg.data.datasets.medleydb.root == str(tmp_path)


def test_full_disk_and_permission_are_named(tmp_path, monkeypatch):
    import errno
    from collections import namedtuple

    import mir.audio
    from mir.audio import atomic_write
    from mir.errors import OutputError

    def to_dev_full(tmp: str) -> None:
        with open("/dev/full", "wb") as f:  # every write fails with ENOSPC
            f.write(b"x" * 65536)

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with pytest.raises(OutputError) as info:
        atomic_write(tmp_path / "a.csv", to_dev_full)
    assert str(info.value) == f"{tmp_path / 'a.csv'}: cannot write (no space left on device)"

    # libsndfile says only "System error." when the disk is full: the free space is asked
    vfs = namedtuple("vfs", "f_bavail f_frsize")
    monkeypatch.setattr(mir.audio.os, "statvfs", lambda p: vfs(0, 4096))

    def sndfile_fails(tmp: str) -> None:
        sf.write("/dev/full", np.zeros(1 << 16, dtype=np.float32), 22050, format="WAV")

    with pytest.raises(OutputError, match=r"\(no space left on device, 0 bytes free\)"):
        atomic_write(tmp_path / "v.wav", sndfile_fails)
    monkeypatch.undo()

    def denied(tmp: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(OutputError, match=r"v\.wav: cannot write \(permission denied\)"):
        atomic_write(tmp_path / "v.wav", denied)
    with pytest.raises(ValueError, match="a bug"):  # any other failure is not disguised
        atomic_write(tmp_path / "v.wav", lambda tmp: (_ for _ in ()).throw(ValueError("a bug")))
    assert not list(tmp_path.iterdir())


def test_ten_ms_clip_with_the_beats_head_gives_an_empty_estimate(compose, tmp_path):
    from hydra.utils import instantiate

    from mir.data.track import Track

    cfg = compose(["task=[beats,melody]"], tmp_path)
    module = instantiate(cfg.model).eval()
    sr = module.model.frontend.sr
    clip = 0.1 * np.random.default_rng(0).standard_normal(int(0.01 * sr)).astype(np.float32)
    est = module.predict_track(Track(name="clip", audio=clip, sr=sr))
    assert len(est["beats"].beats) == 0
    assert len(est["beats"].downbeats) == 0
    assert len(est["melody"][0]) == module.model.frontend.n_frames(len(clip))


@pytest.mark.parametrize("experiment", [None, "all_tasks", "jansson_unet", "multitask_f0"])
def test_default_settings_pass_the_settings_check(compose, tmp_path, experiment):
    from mir.train import check_settings

    overrides = [] if experiment is None else [f"experiment={experiment}"]
    check_settings(compose(overrides, tmp_path, small=False))
