"""Analyse audio files with a trained model.

Usage:
    python -m mir.predict ckpt=<path> input=<file or folder> output=<folder>
        [overwrite=false] [device=cpu] [precision=float32] [top_k=5] [min_note=0.05]
        [strict=false]

Arguments (``key=value``: a Hydra app like ``mir.train``, configured by ``conf/predict.yaml``;
``--help``, ``--cfg job`` and ``-m`` sweeps, e.g. ``-m ckpt=a.ckpt,b.ckpt``, work as there):
    ckpt: checkpoint written by ``mir.train`` (``.../checkpoints/last.ckpt``).
    input: an audio file, or a folder searched recursively for wav, flac, mp3, ogg, aiff.
    output: folder receiving one sub-folder per input file.
    overwrite: redo inputs that already have a ``DONE`` marker (default: skip those whose
        marker records this input's path, size and modification time).
    device: torch device for inference (``cpu``, ``cuda``, ``cuda:1``...).
    precision: the trunk and salience heads' arithmetic in the fast inference copy
        (`mir.models.fused.inference_model`): ``float32`` (default), ``bf16`` or ``int8``
        (CPU only; calibrated once on synthetic tones). Faster on CPUs with AVX512-BF16 or
        VNNI; scores move by a few tenths of a point either way (experiments/int8/).
    top_k: tags listed in ``<task>.json``'s ``top``.
    min_note: shortest MIDI note kept, in s.
    strict: a file whose data is shorter than its header declares fails (default: a
        warning naming both lengths, and the file is analysed as it is).

Output layout, for an input ``<input>/<dir>/<name>.<ext>``:
    <output>/<dir>/<name>/
        <source>.wav        separation: one per source, the input's rate, length and
                            channels (each channel masked with the mono model's masks)
        <task>.csv          melody/bass/vocal: ``time,f0`` rows (0 Hz = unvoiced)
        <task>.mid          melody/bass/vocal/multif0: note events
        multif0.csv         multi-f0: ``time<TAB>f1<TAB>f2...`` lines
        drums.mid           drum onsets, General-MIDI percussion
        <task>.beats.txt    beats: one time per line (and <task>.downbeats.txt)
        tagging.json        tags: top-k and all scores
        <name>.jams         every annotation above in one JAMS file
        DONE                written last (JSON: the input's path, size and mtime, the
                            checkpoint); its presence means the folder is complete

``<name>`` becomes ``<name>_<ext>-<hash>`` (8 hex digits of the relative path's hash) when
another input has the same name (``a.wav`` and ``a.flac``) or its folder would hold
another input's outputs (``a.wav`` beside ``a/``). Temporary files (hidden, ending in
``.tmp``) a killed run left in the output folder are removed at start.

Any sample rate or channel count is accepted: the model hears the mono downmix
resampled to its own rate. Unreadable files are reported on one line each and skipped;
the exit status is 1 when any file failed, 2 when the command itself is wrong.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mir.errors import ConfigError, MirError

log = logging.getLogger("mir.predict")

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".aiff", ".aif")
DONE = "DONE"


# -- command line ---------------------------------------------------------------------------
def as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}={value!r} must be true or false")


def as_int(value: Any, key: str, minimum: int) -> int:
    """`value` as an integer >= `minimum`, else a `ConfigError` naming `key`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}")
    return value


def as_number(value: Any, key: str, minimum: float) -> float:
    """`value` as a finite number >= `minimum`, else a `ConfigError` naming `key`."""
    import math

    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{key}={value!r} must be a number >= {minimum:g}")
    return float(value)


def check_writable_dir(path: Path, what: str) -> None:
    """Check, before any work, that `path` is (or can be created as) a writable folder.

    Raises:
        ConfigError: a part of the path is a file, a symbolic link loop, or a folder this
            user may not write to.
    """
    import errno
    import os

    probe = Path(path)
    while True:
        try:
            st = os.stat(probe)
            break
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"{what} {path}: {probe} is a symbolic link loop") from None
            if exc.errno == errno.ENOTDIR:
                raise ConfigError(f"{what} {path}: a part of it is a file, not a folder") from None
            if exc.errno != errno.ENOENT or probe.parent == probe:
                raise ConfigError(f"{what} {path}: {exc.strerror}") from None
            probe = probe.parent  # not there yet: the nearest existing folder must be writable
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: permission denied (cannot write to {probe})")


def parse_device(device: str) -> Any:
    """`device` as a `torch.device` that exists here, else a `ConfigError`."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available; use device=cpu")
    return dev


def hydra_app(argv: Sequence[str] | None, config_name: str, body: Callable[[Any], int]) -> int:
    """The shared entry of ``mir.predict``, ``mir.evaluate`` and ``mir.export``: the Hydra
    app ``conf/<config_name>.yaml`` (found through `mir.configs.CONF`, as ``mir.train``'s)
    run on `argv` (default: the command line), so overrides, ``--help``, ``--cfg job`` and
    ``-m`` sweeps work as for ``mir.train``. Each job's `body(cfg)` returns its exit code;
    a `MirError` becomes one ``error:`` line, exit 2, as does a bad override (Hydra's message).

    Returns:
        The largest exit code of the jobs (0 for ``--help``).
    """
    import hydra

    from mir.configs import CONF

    codes: list[int] = []

    def job(cfg: Any) -> None:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            codes.append(int(body(cfg)))
        except MirError as exc:
            print(f"error: {exc}", file=sys.stderr)
            codes.append(2)

    try:
        check_overrides(sys.argv[1:] if argv is None else argv, CONF / f"{config_name}.yaml")
    except MirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = hydra.main(version_base="1.3", config_path=str(CONF), config_name=config_name)(job)
    saved = sys.argv
    sys.argv = [f"mir.{config_name}", *(sys.argv[1:] if argv is None else argv)]
    try:
        app()
    except SystemExit as exc:  # Hydra's own error (printed), e.g. an unknown key
        if exc.code not in (0, None):
            return 2
    finally:
        sys.argv = saved
    return max(codes, default=0)


_FLAGS_WITH_VALUE = (
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
)


def check_overrides(argv: Sequence[str], config: Path) -> None:
    """Check the ``key=value`` arguments of a Hydra app against its config file with Hydra's
    override parser, so a mistyped one is one line naming it (Hydra's own report is several).

    Raises:
        ConfigError: an argument is not ``key=value`` or names a key the config lacks.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    conf = OmegaConf.load(config)
    known = [k for k in conf if k not in ("defaults", "hydra")]
    known += [next(iter(d)) for d in conf.get("defaults", []) if not isinstance(d, str)]
    parser = OverridesParser.create()
    skip = False
    for arg in argv:
        if skip or arg.startswith("-"):
            skip = arg in _FLAGS_WITH_VALUE
            continue
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value")
        try:
            (override,) = parser.parse_overrides([arg])
        except HydraException as exc:
            lines = [ln for ln in str(exc).splitlines() if ln.strip() and "hydra.cc" not in ln]
            raise ConfigError(f"argument {arg!r}: {lines[-1] if lines else exc}") from None
        key = override.key_or_group.split(".")[0].split("/")[0]
        if key not in known and key != "hydra":
            raise ConfigError(f"unknown argument {key!r}; expected one of {', '.join(known)}")


# -- inputs ---------------------------------------------------------------------------------
def find_inputs(path: Path, exclude: Path | None = None) -> list[tuple[Path, str]]:
    """Audio files at `path` and their output folder names.

    A folder is searched recursively (files under `exclude`, the output folder, are left
    out). A file's output name is its relative path without extension, unless that name is
    shared by another file (``a.wav`` and ``a.flac``, or ``A.wav`` and ``a.wav``: folders
    that differ only in case are one folder on some systems) or is a folder that holds
    another input's outputs (``a.wav`` beside ``a/b.wav``); such a file's name becomes
    ``<relative path>_<ext>-<8 hex digits of the hash of its relative path>``, so no two
    inputs ever share an output folder and none nests inside another's.

    Raises:
        ConfigError: `path` does not exist or holds no audio file, or two inputs still map
            to one output name (both are named).
    """
    check_exists(path, "input")
    if path.is_file():
        return [(path, path.stem)]
    ex = exclude.resolve() if exclude is not None else None
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS
        and p.is_file()
        and not (ex is not None and p.resolve().is_relative_to(ex))
    )
    if not files:
        raise ConfigError(
            f"no audio files ({', '.join(e[1:] for e in AUDIO_EXTENSIONS)}) under {path}"
        )
    rel = [p.relative_to(path).as_posix() for p in files]
    plain = [r.rsplit(".", 1)[0] for r in rel]
    folded = [n.casefold() for n in plain]
    count = {n: folded.count(n) for n in folded}
    ancestors = {"/".join(n.split("/")[:i]) for n in folded for i in range(1, n.count("/") + 1)}
    names = [
        _hashed(r) if count[f] > 1 or f in ancestors else n
        for r, n, f in zip(rel, plain, folded, strict=True)
    ]
    seen: dict[str, Path] = {}
    for p, n in zip(files, names, strict=True):
        other = seen.setdefault(n.casefold(), p)
        if other is not p:
            raise ConfigError(f"inputs {other} and {p} would share the output folder {n}")
    for p, n in zip(files, names, strict=True):
        parts = n.casefold().split("/")
        for i in range(1, len(parts)):
            other = seen.get("/".join(parts[:i]))
            if other is not None:
                raise ConfigError(f"the outputs of {p} would lie inside those of {other}")
    return list(zip(files, names, strict=True))


def _hashed(rel: str) -> str:
    """``<rel without ext>_<ext>-<8 hex digits of sha1(rel)>``: unique per relative path."""
    import hashlib

    stem, _, ext = rel.rpartition(".")
    return f"{stem}_{ext}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"


def check_exists(path: Path, what: str) -> None:
    """Raise a `ConfigError` that names why `path` cannot be reached (missing, a symlink
    loop, permission)."""
    import errno
    import os

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{what} {path} is a symbolic link loop") from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"{what} {path}: permission denied") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ConfigError(f"{what} {path} does not exist") from None
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None


def input_signature(path: Path) -> dict[str, Any]:
    """What identifies an input's content for the DONE marker: path, size, mtime."""
    st = path.stat()
    return {"input": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_done(out_dir: Path, path: Path) -> bool:
    """True when `out_dir` holds a DONE marker written for this very input (same path,
    size and modification time); a changed, moved or replaced input is redone."""
    done = out_dir / DONE
    if not done.is_file():
        return False
    try:
        marker = json.loads(done.read_text())
    except (OSError, ValueError):
        return False
    want = input_signature(path)
    return isinstance(marker, dict) and all(marker.get(k) == v for k, v in want.items())


# -- outputs ------------------------------------------------------------------------------
# Each task writes its own files and JAMS annotation (`Task.write_outputs`), given a
# `mir.tasks.base.OutputContext` (here `FileContext`), from its stream (`mir.streams`).


def separate_channels(task: Any, output: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Apply one raw separation output to each channel of the input.

    The model sees the mono downmix; each channel of a multichannel input is masked with
    the same masks and inverted with its own phase (`SeparationTask.separate`), so the
    stems keep the input's image and the sources sum to each channel wherever the masks
    sum to one.

    Args:
        task: the separation task.
        output: the head's raw full-track output.
        channels: (C, N) audio at the front end's rate.

    Returns:
        (S, C, N) float32 waveforms.
    """
    per_channel = [task.separate(output, x) for x in channels]  # one at a time: bounded memory
    return np.stack(per_channel, axis=1)


# -- one file, streamed ---------------------------------------------------------------------
BLOCK_SECONDS = 10.0  # audio is read and resampled this much at a time


class AudioStream:
    """One pass over an audio file: its mono downmix and its channels at the model's rate,
    read and resampled block by block (soxr's stream gives the same samples as resampling
    the whole file), holding only the samples not yet released.

    Args:
        path: the audio file.
        sr: the model's sample rate in Hz.

    Raises:
        AudioError: the file cannot be read or is empty.
    """

    def __init__(self, path: Path, sr: int) -> None:
        import soundfile as sf

        from mir.audio import audio_info, check_complete
        from mir.errors import AudioError

        info = audio_info(path)
        self.path = path
        try:
            self.file = sf.SoundFile(str(path))
        except Exception as exc:
            raise AudioError(f"{path}: cannot read audio ({exc})") from None
        self.sr_in = int(self.file.samplerate)
        self.n_in = int(info.frames)
        self.channels = int(self.file.channels)
        if self.n_in == 0:
            self.file.close()
            raise AudioError(f"{path}: audio file is empty")
        check_complete(path, self.n_in)
        self.sr = int(sr)
        # soxr's output length for the whole file (checked at the end)
        self.n = (2 * self.n_in * self.sr + self.sr_in) // (2 * self.sr_in)
        resample = self.sr_in != self.sr
        self._mono_rs = self._stream(1) if resample else None
        self._chan_rs = self._stream(self.channels) if resample and self.channels > 1 else None
        self.start = 0  # model-rate index of the first held sample
        self.mono = np.zeros(0, np.float32)
        self.chans = np.zeros((self.channels, 0), np.float32)
        self.read_in = 0
        self.eof = False

    def _stream(self, channels: int) -> Any:
        import soxr

        return soxr.ResampleStream(self.sr_in, self.sr, channels, dtype="float32", quality="HQ")

    def _pull(self) -> None:
        from mir.audio import fit_length
        from mir.errors import AudioError

        try:
            block = self.file.read(int(BLOCK_SECONDS * self.sr_in), dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioError(f"{self.path}: cannot read audio ({exc})") from None
        self.read_in += len(block)
        last = len(block) == 0 or self.read_in >= self.n_in
        x = block.T  # (C, k)
        mono = x.mean(axis=0)  # as `load_audio`
        if not np.all(np.isfinite(mono)):
            raise AudioError(f"{self.path}: audio contains NaN or infinite samples")
        if self._mono_rs is not None:
            mono = self._mono_rs.resample_chunk(mono, last=last)
        self.mono = np.concatenate([self.mono, mono.astype(np.float32)])
        if self.channels > 1:
            chans = x
            if self._chan_rs is not None:
                chans = self._chan_rs.resample_chunk(np.ascontiguousarray(block), last=last).T
            self.chans = np.concatenate([self.chans, chans.astype(np.float32)], axis=1)
        if last:
            self.eof = True
            self.file.close()
            held = self.start + len(self.mono)
            if held != self.n:  # never seen; keep every later index valid
                log.debug("%s: %d samples after resampling, expected %d", self.path, held, self.n)
                self.mono = fit_length(self.mono, self.n - self.start)
                self.chans = fit_length(self.chans, self.n - self.start)

    def get(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples [a, b) at the model's rate: (b - a,) mono and (C, b - a) channels."""
        held = len(self.mono) if self.channels == 1 else min(len(self.mono), self.chans.shape[1])
        while not self.eof and self.start + held < b:
            self._pull()
            held = (
                len(self.mono) if self.channels == 1 else min(len(self.mono), self.chans.shape[1])
            )
        i, j = a - self.start, b - self.start
        assert i >= 0, "samples were released before use"
        mono = self.mono[i:j]
        return mono, (self.chans[:, i:j] if self.channels > 1 else mono[None])

    def release(self, upto: int) -> None:
        """Forget the samples before `upto`."""
        drop = max(0, min(upto - self.start, len(self.mono)))
        if drop:
            self.mono = self.mono[drop:].copy()
            if self.channels > 1:
                self.chans = self.chans[:, drop:].copy()
            self.start += drop

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def predict_file(
    module: Any,
    path: Path,
    out_dir: Path,
    top_k: int = 5,
    min_note: float = 0.05,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Run every head on one audio file and write all outputs to `out_dir`, DONE last.

    The file is streamed: read and resampled a block at a time, run through the model in
    the chunks of `MirModule.analyse` (the one inference path), each chunk decoded and
    its stems written as soon as possible; what is kept grows by a few bytes per frame,
    not by the audio or the raw outputs (the U-Net separation head and tasks without a
    streamed decoder keep their raw output, as before).

    Raises:
        AudioError: the file cannot be read.
    """

    from mir.audio import atomic_write
    from mir.outputs import write_jams
    from mir.tasks.base import OutputContext as FileContext

    fe = module.model.frontend
    done = out_dir / DONE
    if done.is_dir() or out_dir.is_file():
        raise ConfigError(
            f"{path}: its output {done} is in the way (a folder or file of that name)"
        )
    audio = AudioStream(path, fe.sr)
    streams: dict[str, Any] = {}
    try:
        done.unlink(missing_ok=True)  # an interrupted overwrite must not look finished
        streams = {n: t.stream(audio, out_dir) for n, t in module.tasks.items()}
        module.analyse(audio, decode=(), streams=streams)
        ctx = FileContext(
            out_dir,
            audio.n_in / audio.sr_in,
            audio.sr_in,
            None,
            audio.n_in,
            {},
            top_k,
            min_note,
            path,
            sr_model=fe.sr,
        )
        annotations = []
        for stream in streams.values():
            annotations += stream.finish(ctx)
    except BaseException:
        for stream in streams.values():
            stream.abort()
        raise
    finally:
        audio.close()
    sandbox = {"mir": {"input": str(path), "tasks": list(module.tasks), **dict(meta or {})}}
    write_jams(out_dir / f"{path.stem}.jams", annotations, ctx.duration, path.stem, sandbox)
    marker = {
        **input_signature(path),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(meta or {}),
    }
    text = json.dumps(marker, indent=2) + "\n"
    atomic_write(done, lambda tmp: Path(tmp).write_text(text))


# -- the command ----------------------------------------------------------------------------
def run(
    ckpt: str,
    input: str,
    output: str,
    overwrite: bool = False,
    device: str = "cpu",
    top_k: int = 5,
    min_note: float = 0.05,
    precision: str = "float32",
) -> tuple[int, int, int]:
    """Predict every input file; returns (files done, skipped as finished, failed)."""
    from tqdm import tqdm

    from mir.audio import remove_temp_files
    from mir.checkpoint import checkpoint_file, checkpoint_name, load_module
    from mir.inference import return_freed_memory

    if not ckpt:
        raise ConfigError("no checkpoint given: use ckpt=<path to .ckpt>")
    if not input:
        raise ConfigError("no input given: use input=<audio file or folder>")
    if not output:
        raise ConfigError("no output folder given: use output=<folder>")
    top_k = as_int(top_k, "top_k", 0)
    min_note = as_number(min_note, "min_note", 0.0)
    overwrite = as_bool(overwrite, "overwrite")
    dev = parse_device(device)
    dtype = parse_precision(precision, dev)
    out_root = Path(output)
    in_path = Path(input)
    check_exists(in_path, "input")
    check_writable_dir(out_root, "output")
    if out_root.resolve() == in_path.resolve():
        raise ConfigError(f"output {out_root} is the input folder; choose another output folder")
    if out_root.exists() and in_path.resolve().is_relative_to(out_root.resolve()):
        raise ConfigError(f"input {in_path} is inside the output folder {out_root}")
    files = find_inputs(in_path, exclude=out_root)
    checkpoint_file(ckpt)
    module, _ = load_module(ckpt, map_location="cpu")
    module = to_device(module, device)
    module.inference_dtype = dtype
    return_freed_memory()  # memory then does not grow with the input's length
    meta = {"ckpt": checkpoint_name(ckpt)}
    if out_root.is_dir():
        remove_temp_files(out_root)  # a killed run's half-written files

    done = skipped = failed = 0
    bar = tqdm(files, desc="mir.predict", unit="file", file=sys.stderr, dynamic_ncols=True)
    for path, name in bar:
        out_dir = out_root / name
        if not overwrite and is_done(out_dir, path):
            skipped += 1
            continue
        bar.set_postfix_str(name[-40:], refresh=False)
        try:
            predict_file(module, path, out_dir, top_k=top_k, min_note=min_note, meta=meta)
            done += 1
        except MirError as exc:
            failed += 1
            tqdm.write(f"error: {exc} (skipped)", file=sys.stderr)
        except Exception as exc:  # one bad file must not stop the batch
            failed += 1
            log.debug("failure on %s", path, exc_info=True)
            tqdm.write(f"error: {path}: {type(exc).__name__}: {exc} (skipped)", file=sys.stderr)
    bar.close()
    return done, skipped, failed


PRECISIONS = ("float32", "bf16", "int8")


def parse_precision(precision: Any, device: Any) -> Any:
    """`precision` (float32, bf16 or int8) as the inference copy's torch dtype, else a
    `ConfigError`; int8 runs on the CPU only."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} must be one of {', '.join(PRECISIONS)}")
    if precision == "int8" and getattr(device, "type", "cpu") != "cpu":
        raise ConfigError(f"precision=int8 runs on the CPU only, not device={device}")
    return {"float32": torch.float32, "bf16": torch.bfloat16, "int8": torch.qint8}[precision]


def to_device(module: Any, device: str) -> Any:
    return module.to(parse_device(device)).eval()


def main(argv: Sequence[str] | None = None) -> int:
    def body(cfg: Any) -> int:
        from mir.audio import set_strict

        keys = ("ckpt", "input", "output", "device", "top_k", "min_note", "precision")
        args = {k: cfg[k] for k in keys}
        args["overwrite"] = as_bool(cfg.overwrite, "overwrite")
        set_strict(as_bool(cfg.strict, "strict"))
        done, skipped, failed = run(**args)
        print(
            f"mir.predict: {done} done, {skipped} already finished (skipped), {failed} failed",
            file=sys.stderr,
        )
        return 1 if failed else 0

    return hydra_app(argv, "predict", body)


if __name__ == "__main__":
    sys.exit(main())
