"""The package installs with its configs: a wheel built from pyproject.toml trains and predicts
from a folder outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tomllib

from mir.configs import CONF
from tests.conftest import REPO, SMALL, SMALL_EMBEDDED


def test_pyproject_lists_every_subpackage():
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "mir").rglob("__init__.py")
    }
    assert on_disk | {"mir.conf"} == listed


def test_checkout_reads_conf_beside_the_package():
    assert CONF == REPO / "conf"
    assert (CONF / "config.yaml").is_file()


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path, embedded_root):
    # Build from a copy of what the wheel needs, so the build leaves nothing in the checkout.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("mir", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        cwd=tmp_path,
        env=env,
    )
    (wheel,) = dist.glob("mir-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = {f"mir/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*.yaml")}
    assert yamls
    assert yamls <= names, sorted(yamls - names)[:5]

    # A fresh venv holding the wheel; its dependencies come from this venv's site-packages
    # (a plain path entry, so this venv's editable install of mir is not picked up).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    py = venv / "bin" / "python"
    _run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        cwd=tmp_path,
        env=env,
    )
    site = Path(
        subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(py), "-c", "import mir; print(mir.__file__)"], cwd=work, env=env)
    assert str(venv) in where
    assert str(REPO) not in where

    run_dir = work / "run"
    _run(
        [
            str(py),
            "-m",
            "mir.train",
            "task=melody",
            "trainer=smoke",
            *SMALL,
            *SMALL_EMBEDDED,
            f"data.datasets.embedded.root={embedded_root}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=work,
        env=env,
    )
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    sr = 22050
    t = np.arange(2 * sr) / sr
    sf.write(work / "tone.wav", 0.3 * np.sin(2 * np.pi * 220.0 * t), sr)
    _run(
        [
            str(py),
            "-m",
            "mir.predict",
            f"ckpt={ckpt}",
            f"input={work / 'tone.wav'}",
            f"output={work / 'out'}",
        ],
        cwd=work,
        env=env,
    )
    assert (work / "out" / "tone" / "melody.csv").is_file()
    assert (work / "out" / "tone" / "DONE").is_file()
