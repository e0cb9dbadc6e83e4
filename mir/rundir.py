"""One writer per run dir: the advisory lock ``<run dir>/train.lock`` that `mir.train` holds.

Its own module (not `mir.train`) so that the Hydra callback and the training share one
record of the locks this process holds: ``python -m mir.train`` runs `mir.train` as
``__main__``, and the callback's ``_target_`` would import a second copy of it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mir.errors import ConfigError

LOCK = "train.lock"

_HELD: dict[Path, int] = {}
_MADE: dict[Path, Path] = {}
"""Held run dirs whose lock file this process created -> the outermost thing it created
for it: a folder (the run dir or a parent), or the lock file alone."""
"""Run dirs whose lock this process holds -> the lock file's descriptor."""


def _is_ddp_child() -> bool:
    return any(int(os.environ.get(k, "0") or 0) for k in ("LOCAL_RANK", "RANK", "NODE_RANK"))


def acquire_run_dir(out_dir: Path) -> bool:
    """Take the advisory lock (``fcntl.flock``) on ``<out_dir>/train.lock`` and write this
    PID in it. A refusal writes nothing: a held lock's file already exists and is only
    opened. Returns False when this process holds it already.

    Raises:
        ConfigError: another process holds the lock (its PID is named).
    """
    import fcntl

    key = Path(os.path.abspath(out_dir))
    if key in _HELD:
        return False
    path = out_dir / LOCK
    made: Path | None = None  # the outermost folder created here, if any
    try:  # an existing lock file: try it before creating anything
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        if not key.exists():
            made = key
            while not made.parent.exists() and made.parent != made:
                made = made.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        made = made or path
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"run dir {out_dir} is in use by another training (PID {holder}, lock {path}); "
            "wait for it to finish or choose another hydra.run.dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd
    if made is not None:
        _MADE[key] = made
    return True


def release_run_dir(out_dir: Path) -> None:
    """Release a lock `acquire_run_dir` took (nothing if this process does not hold it)."""
    key = Path(os.path.abspath(out_dir))
    fd = _HELD.pop(key, None)
    _MADE.pop(key, None)
    if fd is not None:
        os.close(fd)


def abandon_run_dirs() -> None:
    """Release every lock this process holds, after a refusal before any work: a lock file
    it created is removed, and so are the folders it created for it if nothing else was
    written in them (a refused run leaves the run dir as it found it)."""
    for key in list(_HELD):
        made = _MADE.get(key)
        release_run_dir(key)
        if made is None:
            continue
        (key / LOCK).unlink(missing_ok=True)
        folder = key
        while folder != made.parent and folder.is_relative_to(made):
            try:
                folder.rmdir()  # only while empty
            except OSError:
                break
            folder = folder.parent


@contextlib.contextmanager
def run_dir_lock(out_dir: Path) -> Iterator[None]:
    """Hold an advisory lock (``fcntl.flock``) on ``<run dir>/train.lock`` while training,
    so a second training in the same run dir refuses at once instead of overwriting the
    checkpoints and scores. The lock holder's PID is written in the file; the lock goes
    with the process (a killed run leaves no stale lock). DDP ranks other than 0 share
    rank 0's lock. Under ``python -m mir.train`` the lock is already held (`RunDirLock`
    took it before Hydra wrote anything in the run dir).

    Raises:
        ConfigError: another process holds the lock (its PID is named).
    """
    if _is_ddp_child():
        yield
        return
    took = acquire_run_dir(out_dir)
    try:
        yield
    finally:
        if took:
            release_run_dir(out_dir)


class RunDirLock(Callback):
    """Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``): takes the run dir's lock
    in ``on_run_start``, before Hydra creates the dir or writes ``.hydra/`` and the log
    file in it, so a second training in a busy run dir is refused with nothing written;
    a multirun locks its sweep dir the same way, before ``multirun.yaml``. (Each job of a
    multirun still locks its own dir in `mir.train.run`.)"""

    def __init__(self) -> None:
        self.held: list[Path] = []

    def _take(self, config: DictConfig, key: str) -> None:
        from hydra.core.hydra_config import HydraConfig

        if _is_ddp_child():
            return
        HydraConfig.instance().set_config(config)  # as Hydra does before it reads the dir
        out = Path(os.path.abspath(str(OmegaConf.select(config, key))))
        try:
            took = acquire_run_dir(out)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        if took:
            self.held.append(out)

    def _release(self) -> None:
        while self.held:
            release_run_dir(self.held.pop())

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._take(config, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._take(config, "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()
