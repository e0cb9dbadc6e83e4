"""`mir.export`: one TorchScript file equal to the eager model at any input length."""

from __future__ import annotations

import json

import pytest
import torch

from tests._ckpt import trained_ckpt, trained_module  # noqa: F401


@pytest.fixture(scope="module")
def exported(trained_ckpt, tmp_path_factory):  # noqa: F811
    from mir.export import run

    out = tmp_path_factory.mktemp("export") / "model.pt"
    path, onnx_path, reason = run(str(trained_ckpt), str(out), onnx=True)
    return path, onnx_path, reason


def test_torchscript_equals_eager_at_two_lengths(exported, trained_module):  # noqa: F811
    module, _ = trained_module
    path, _, _ = exported
    extra = {"mir_export.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["mir_export.json"])
    assert meta["tasks"] == list(module.tasks)
    assert meta["sample_rate"] == module.model.frontend.sr
    assert json.loads(path.with_name(path.name + ".json").read_text())["tasks"] == meta["tasks"]
    gen = torch.Generator().manual_seed(3)
    sr = module.model.frontend.sr
    for seconds in (0.7, 3.3):
        x = 0.1 * torch.randn(2, int(seconds * sr), generator=gen)
        with torch.no_grad():
            eager, _ = module.model(x)
            got = scripted(x)
        assert isinstance(got, tuple)
        assert len(got) == len(meta["tasks"])
        for name, y in zip(meta["tasks"], got, strict=True):
            assert y.shape == eager[name].shape, name
            torch.testing.assert_close(y, eager[name], atol=1e-4, rtol=0)


def test_onnx_is_refused_with_a_reason(exported):
    """The README says ONNX export is not possible (the front end's complex FFTs): the export
    reports why on one line and leaves no file; a torch that can export them fails this test,
    and the README must change with it."""
    path, onnx_path, reason = exported
    assert onnx_path is None
    assert reason
    assert "\n" not in reason
    assert not path.with_suffix(".onnx").exists()
    assert "fft" in reason.lower()  # e.g. aten::fft_rfft is not supported


def test_bad_checkpoint_is_one_line(tmp_path, capsys):
    from mir.export import main

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main([f"ckpt={bad}"]) == 2
    assert main([f"ckpt={tmp_path / 'missing.ckpt'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    refused = "not a mir checkpoint, or it contains objects that would run code"
    assert err[0] == f"error: {bad}: {refused}"
    assert err[1] == f"error: {tmp_path / 'missing.ckpt'}: checkpoint file does not exist"
