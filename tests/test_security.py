"""Hostile checkpoints: opening one never runs code or touches a file.

Each payload would create a marker file (or truncate a victim file) if it ran. Every
hostile checkpoint goes through `mir.predict`, `mir.evaluate`, `mir.export`,
``mir.train ckpt_path=...`` and the ``pretrained:`` loader, and each must be refused with
one line while the folder stays byte-for-byte as it was.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mir.errors import ConfigError
from tests._ckpt import trained_ckpt  # noqa: F401
from tests.conftest import REPO

REFUSED = "not a mir checkpoint, or it contains objects that would run code"


class Payload:
    """Unpickling this calls `func(*args)`: what an attacker's ``__reduce__`` does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` and a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def base(trained_ckpt):  # noqa: F811
    """A real mir checkpoint, loaded as data."""
    return torch.load(trained_ckpt, weights_only=True)


@pytest.fixture
def site(tmp_path):
    """A work folder: an input wav, a victim file, and where a marker would appear."""
    sr = 22050
    t = np.arange(sr) / sr
    sf.write(tmp_path / "in.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    (tmp_path / "victim.txt").write_text("precious\n")
    return tmp_path


def pickle_payloads(base: dict, marker: Path) -> dict[str, dict]:
    """Checkpoints whose unpickling would create `marker`."""
    top = {"state_dict": {}, "mir_config": base["mir_config"], "x": Payload(open, str(marker), "w")}
    nested = copy.copy(base)
    evil = Payload(os.system, f"touch {marker}")
    nested["callbacks"] = {**base.get("callbacks", {}), "evil": evil}
    in_weights = copy.copy(base)
    code = Payload(exec, f"open({str(marker)!r},'w')")
    in_weights["state_dict"] = {**base["state_dict"], "w": code}
    return {"top_level": top, "in_callbacks": nested, "in_state_dict": in_weights}


def config_payloads(base: dict, marker: Path, victim: Path) -> dict[str, tuple[dict, str]]:
    """Checkpoints whose config would run code or write a file if instantiated, and the
    key each refusal must name."""
    out: dict[str, tuple[dict, str]] = {}

    def add(name: str, key: str, edit) -> None:
        ckpt = copy.deepcopy(base)
        edit(ckpt["mir_config"])
        out[name] = (ckpt, key)

    add(
        "open_truncates",
        "model.evil._target_",
        lambda c: c["model"].__setitem__(
            "evil", {"_target_": "builtins.open", "_args_": [str(victim), "w"]}
        ),
    )
    add(
        "os_system",
        "model.evil._target_",
        lambda c: c["model"].__setitem__(
            "evil", {"_target_": "os.system", "_args_": [f"touch {marker}"]}
        ),
    )
    add(
        "subprocess_run",
        "model.trunk._target_",
        lambda c: c["model"].__setitem__(
            "trunk", {"_target_": "subprocess.run", "_args_": [["touch", str(marker)]]}
        ),
    )
    add(
        "eval",
        "model.frontend._target_",
        lambda c: c["model"]["frontend"].__setitem__("_target_", "builtins.eval"),
    )
    add(
        "args_outside_run",
        "model.optimizer._args_[0]._target_",
        lambda c: c["model"]["optimizer"].update(
            {
                "_target_": "functools.partial",
                "_args_": [{"_target_": "pathlib.Path.write_text", "_args_": [str(victim), ""]}],
            }
        ),
    )
    add(
        "task_target",
        "task.melody._target_",
        lambda c: c["task"]["melody"].__setitem__("_target_", "os.system"),
    )
    add(
        "alias_in_mir",
        "model.evil._target_",
        lambda c: c["model"].__setitem__(
            "evil", {"_target_": "mir.predict.Path", "_args_": [str(victim)]}
        ),
    )
    add(
        "mir_function",
        "model.evil._target_",
        lambda c: c["model"].__setitem__(
            "evil", {"_target_": "mir.audio.write_wav", "_args_": [str(victim), [0.0], 8000]}
        ),
    )
    add(
        "mir_data_class",
        "model.evil._target_",
        lambda c: c["model"].__setitem__(
            "evil", {"_target_": "mir.data.embedded.EmbeddedDataset", "root": str(marker)}
        ),
    )
    add(
        "interpolation",
        "model.chunk_seconds",
        lambda c: c["model"].__setitem__("chunk_seconds", "${oc.env:HOME}"),
    )
    return out


def _through_every_tool(ckpt: str, site: Path, compose) -> list[str]:
    """Open `ckpt` with each tool; returns the error messages (each must be raised)."""
    from mir import evaluate, export, predict, train

    errors = []
    calls = [
        lambda: predict.run(ckpt, str(site / "in.wav"), str(site / "out")),
        lambda: evaluate.run(ckpt, "embedded", output=str(site / "eval")),
        lambda: export.run(ckpt, str(site / "model.pt")),
    ]
    if compose is not None:
        cfg = compose(["task=melody", "trainer=smoke", f"ckpt_path={ckpt}"], site / "run")
        calls.append(lambda: train.run(cfg))
    for call in calls:
        with pytest.raises(ConfigError) as info:
            call()
        errors.append(str(info.value))
    return errors


def test_payloads_are_live(base, tmp_path):
    """Control: full unpickling of these files does run the payload (so the refusals below
    are meaningful)."""
    marker = tmp_path / "marker"
    for name, ckpt in pickle_payloads(base, marker).items():
        torch.save(ckpt, tmp_path / f"{name}.ckpt")
        marker.unlink(missing_ok=True)
        torch.load(tmp_path / f"{name}.ckpt", weights_only=False)
        assert marker.exists(), name


@pytest.mark.parametrize("kind", ["top_level", "in_callbacks", "in_state_dict"])
def test_pickle_payload_is_refused_everywhere(base, site, compose, kind):
    marker = site / "marker"
    path = site / f"{kind}.ckpt"
    torch.save(pickle_payloads(base, marker)[kind], path)
    before = snapshot(site)
    for msg in _through_every_tool(str(path), site, compose):
        assert msg == f"{path}: {REFUSED}"
    assert not marker.exists()
    assert snapshot(site) == before


@pytest.mark.parametrize(
    "kind",
    [
        "open_truncates",
        "os_system",
        "subprocess_run",
        "eval",
        "args_outside_run",
        "task_target",
        "alias_in_mir",
        "mir_function",
        "mir_data_class",
        "interpolation",
    ],
)
def test_config_payload_is_refused_everywhere(base, site, compose, kind):
    marker, victim = site / "marker", site / "victim.txt"
    ckpt, key = config_payloads(base, marker, victim)[kind]
    path = site / f"{kind}.ckpt"
    torch.save(ckpt, path)
    before = snapshot(site)
    for msg in _through_every_tool(str(path), site, compose):
        assert msg.startswith(f"{path}: mir_config {key} "), msg
        assert "\n" not in msg
    assert not marker.exists()
    assert victim.read_text() == "precious\n"
    assert snapshot(site) == before


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    """A stand-in `mir/pretrained` folder (the real files come from the pretrained issue)."""
    import mir.checkpoint

    root = tmp_path / "pretrained"
    (root / "demo").mkdir(parents=True)
    monkeypatch.setattr(mir.checkpoint, "pretrained_root", lambda: root)
    return root


def test_pretrained_name_loads_the_packaged_file(packaged, trained_ckpt, site):  # noqa: F811
    from mir import predict
    from mir.checkpoint import load_module, pretrained_names

    (packaged / "demo" / "tiny.ckpt").write_bytes(trained_ckpt.read_bytes())
    assert pretrained_names() == ["demo/tiny"]
    module, cfg = load_module("pretrained:demo/tiny")
    assert set(module.tasks) == set(cfg.task)
    assert predict.run("pretrained:demo/tiny", str(site / "in.wav"), str(site / "out"))[0] == 1
    meta = (site / "out" / "in" / "DONE").read_text()
    assert "pretrained:demo/tiny" in meta


@pytest.mark.parametrize("name", ["nothere", "../pretrained/demo/tiny", "/etc/passwd", ""])
def test_unknown_pretrained_name_lists_the_available_ones(packaged, trained_ckpt, name):  # noqa: F811
    from mir.checkpoint import load_module

    (packaged / "demo" / "tiny.ckpt").write_bytes(trained_ckpt.read_bytes())
    with pytest.raises(ConfigError) as info:
        load_module(f"pretrained:{name}")
    assert str(info.value) == f"pretrained:{name}: no such pretrained model; available: demo/tiny"


def test_hostile_pretrained_file_is_refused(packaged, base, site):
    marker, victim = site / "marker", site / "victim.txt"
    torch.save(pickle_payloads(base, marker)["in_callbacks"], packaged / "demo" / "pickle.ckpt")
    torch.save(
        config_payloads(base, marker, victim)["open_truncates"][0],
        packaged / "demo" / "config.ckpt",
    )
    before = snapshot(site)
    errors = _through_every_tool("pretrained:demo/pickle", site, None)
    assert errors == [f"pretrained:demo/pickle: {REFUSED}"] * 3
    for msg in _through_every_tool("pretrained:demo/config", site, None):
        assert msg.startswith("pretrained:demo/config: mir_config model.evil._target_ ")
    assert not marker.exists()
    assert snapshot(site) == before


def test_cli_refusals_are_one_line(base, site, embedded_root):
    """The commands print one ``error:`` line, no traceback, and exit 2."""
    marker = site / "marker"
    path = site / "evil.ckpt"
    torch.save(pickle_payloads(base, marker)["in_callbacks"], path)
    before = snapshot(site)
    cmds = [
        ["mir.predict", f"ckpt={path}", f"input={site / 'in.wav'}", f"output={site / 'out'}"],
        ["mir.export", f"ckpt={path}", f"output={site / 'm.pt'}"],
        [
            "mir.train",
            "task=melody",
            "frontend=tiny",
            "model=tiny",
            "logger=[csv]",
            f"data.datasets.embedded.root={embedded_root}",
            f"ckpt_path={path}",
            f"hydra.run.dir={site / 'run'}",
            "hydra.output_subdir=null",
            "hydra/job_logging=none",
            "hydra/hydra_logging=none",
        ],
    ]
    for cmd in cmds:
        r = subprocess.run(
            [sys.executable, "-m", *cmd],
            cwd=site,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert r.returncode == 2, r.stderr[-2000:]
        assert r.stderr.strip().splitlines()[-1] == f"error: {path}: {REFUSED}", r.stderr[-2000:]
        assert "Traceback" not in r.stderr
    assert not marker.exists()
    assert snapshot(site) == before
