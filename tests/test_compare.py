"""`mir.report compare`: intervals that cover the truth, paired tests, clear errors, NaNs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mir import compare as cmp
from mir.errors import ConfigError
from mir.report import main


def _run(system: str, seed: int, scores: dict[str, dict[str, dict[str, float]]]) -> cmp.Run:
    return cmp.Run(system, seed, f"{system}/seed{seed}/scores.json", scores)


def _runs(system: str, x: np.ndarray, metric: str = "Overall Accuracy") -> list[cmp.Run]:
    """Runs of one system from a (seeds, tracks) array of melody scores."""
    return [
        _run(system, k, {"melody": {f"t{j}": {metric: float(v)} for j, v in enumerate(row)}})
        for k, row in enumerate(x)
    ]


def test_intervals_cover_the_truth_about_95_percent(monkeypatch):
    """Synthetic scores = system mean + track effect (shared by both systems) + a seed
    effect + noise: the intervals of a system's mean and of the paired difference cover
    the true values in about 95 % of 200 draws (seeds resampled independently or paired)."""
    monkeypatch.setattr(cmp, "N_RESAMPLES", 999)
    rng = np.random.default_rng(1234)
    n_seeds, n_tracks, reps = 3, 25, 200
    mu_a, mu_b = 0.6, 0.5
    hit_mean = hit_diff = hit_paired = 0
    for _ in range(reps):
        track = rng.normal(0.0, 0.1, n_tracks)  # difficulty of a track, for both systems
        xa = (
            mu_a
            + track
            + rng.normal(0, 0.02, (n_seeds, 1))
            + rng.normal(0, 0.05, (n_seeds, n_tracks))
        )
        xb = (
            mu_b
            + track
            + rng.normal(0, 0.02, (n_seeds, 1))
            + rng.normal(0, 0.05, (n_seeds, n_tracks))
        )
        _, lo, hi = cmp.system_interval(xa, seed=int(rng.integers(1 << 30)))
        hit_mean += lo <= mu_a <= hi
        _, lo, hi = cmp.difference_interval(xa, xb, seed=int(rng.integers(1 << 30)))
        hit_diff += lo <= mu_a - mu_b <= hi
        _, lo, hi = cmp.difference_interval(xa, xb, True, seed=int(rng.integers(1 << 30)))
        hit_paired += lo <= mu_a - mu_b <= hi
    # a binomial(200, 0.95) lies in [0.90, 0.99] with probability > 0.99; resampling only 3
    # seeds makes the interval a little narrow, so the lower bound allows for that
    assert 0.86 <= hit_mean / reps <= 0.995, hit_mean
    assert 0.86 <= hit_diff / reps <= 0.995, hit_diff
    assert 0.86 <= hit_paired / reps <= 0.995, hit_paired


def test_intervals_can_miss():
    """The coverage test can fail: an interval from 3 tracks of a shifted system does not
    contain a true mean that is far away."""
    x = np.array([[0.9, 0.8, 0.85], [0.88, 0.82, 0.86]])
    _, lo, hi = cmp.system_interval(x)
    assert not lo <= 0.5 <= hi
    assert lo <= x.mean() <= hi


def test_identical_systems_give_p_1_and_difference_0():
    x = np.random.default_rng(0).uniform(0, 1, (3, 8))
    result = cmp.compare(_runs("a", x) + _runs("b", x))
    (pair,) = result["rows"][0]["pairs"]
    assert pair["diff"] == 0.0
    assert (pair["ci_low"], pair["ci_high"]) == (0.0, 0.0)
    assert pair["p"] == 1.0
    assert pair["p_holm"] == 1.0
    assert not pair["significant"]
    assert "*n.s.*" in cmp.markdown(result)


def test_a_clear_difference_is_significant_and_holm_corrects():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, (3, 12))
    runs = (
        _runs("a", base + 0.3)
        + _runs("b", base)
        + _runs("c", base + 0.01 * rng.normal(size=base.shape))
    )
    result = cmp.compare(runs)
    pairs = {(p["a"], p["b"]): p for p in result["rows"][0]["pairs"]}
    ab = pairs[("a", "b")]
    assert ab["diff"] == pytest.approx(0.3)
    assert ab["ci_low"] > 0.25
    assert ab["significant"]
    assert ab["p"] == pytest.approx(2 / 2**12)  # exact test: every one of 12 differences > 0
    ps = sorted(p["p"] for p in pairs.values())
    holm = sorted(p["p_holm"] for p in pairs.values())
    assert holm[0] == pytest.approx(min(1.0, 3 * ps[0]))
    assert all(h >= p for h, p in zip(holm, ps, strict=True))
    s = result["rows"][0]["systems"]["a"]
    assert (s["n_tracks"], s["n_seeds"]) == (12, 3)


def test_one_track_one_seed_has_no_interval_and_no_verdict():
    result = cmp.compare(_runs("a", np.array([[0.9]])) + _runs("b", np.array([[0.1]])))
    row = result["rows"][0]
    assert math.isnan(row["systems"]["a"]["ci_low"])
    (pair,) = row["pairs"]
    assert pair["diff"] == pytest.approx(0.8)
    assert math.isnan(pair["ci_low"])
    assert not pair["significant"]
    assert "*n/a*" in cmp.markdown(result)


def test_missing_track_or_metric_is_one_line_naming_run_and_track():
    x = np.full((2, 3), 0.5)
    a, b = _runs("a", x), _runs("b", x)
    del b[1].scores["melody"]["t2"]
    with pytest.raises(
        ConfigError, match=r"^b/seed1/scores.json: task melody: track t2 is missing$"
    ):
        cmp.compare(a + b)
    b = _runs("b", x)
    b[0].scores["melody"]["t1"] = {"Raw Pitch Accuracy": 0.5}
    with pytest.raises(
        ConfigError, match=r"b/seed0/scores.json: task melody, track t1: no metric Overall Accuracy"
    ):
        cmp.compare(a + b)
    with pytest.raises(ConfigError, match="seed 0 appears twice"):
        cmp.compare(a + _runs("a", x[:1]))


def test_nan_scores_are_excluded_and_counted():
    rng = np.random.default_rng(3)
    xa, xb = rng.uniform(0, 1, (2, 6)), rng.uniform(0, 1, (2, 6))
    xa[1, 2] = math.nan  # one seed of one system: the track leaves the whole row
    xb[:, 4] = math.nan
    result = cmp.compare(_runs("a", xa) + _runs("b", xb))
    row = result["rows"][0]
    assert (row["n_tracks"], row["n_excluded"]) == (4, 2)
    assert row["excluded_tracks"] == ["t2", "t4"]
    keep = [0, 1, 3, 5]
    assert row["systems"]["a"]["mean"] == pytest.approx(xa[:, keep].mean())
    assert math.isfinite(row["pairs"][0]["p"])
    assert "2 track(s) left out for a NaN score (t2, t4)" in cmp.markdown(result)


def test_against_tests_only_its_pairs_and_holm_counts_them():
    """With `against`, only the pairs with that system are tested (it is A), and Holm
    corrects over those; by default every pair but baseline - baseline is tested."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, (3, 10))
    peers = [("peer", base[:1]), ("peer/baseline", base[:1] * 0)]
    runs = (
        _runs("ours", base + 0.1)
        + _runs("ours/baseline", base * 0)
        + [cmp.Run(n, None, "peer/per_track.json", _runs(n, x)[0].scores) for n, x in peers]
    )
    full = cmp.compare(runs)
    pairs = [(p["a"], p["b"]) for p in full["rows"][0]["pairs"]]
    assert ("ours/baseline", "peer/baseline") not in pairs
    assert len(pairs) == 5
    assert full["n_tests"] == 5
    one = cmp.compare(runs, against=["peer"])
    pairs = {(p["a"], p["b"]): p for p in one["rows"][0]["pairs"]}
    assert set(pairs) == {("peer", "ours"), ("peer", "ours/baseline"), ("peer", "peer/baseline")}
    assert pairs[("peer", "ours")]["diff"] == pytest.approx(base[:1].mean() - (base + 0.1).mean())
    ps = sorted(p["p"] for p in pairs.values())
    assert sorted(p["p_holm"] for p in pairs.values())[0] == pytest.approx(min(1.0, 3 * ps[0]))
    assert one["n_tests"] == 3
    md = cmp.markdown(one)
    assert "Holm-corrected over the 3 tests of the table (pairs with peer)" in md
    with pytest.raises(ConfigError, match=r"^--against nope: no such system \(systems: ours, "):
        cmp.compare(runs, against=["nope"])


def _job(root: Path, name: str, overrides: list[str], seed: int, per_track: dict) -> None:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    scores = {"monitor": "val/melody/Overall Accuracy", "seed": seed, "test_per_track": per_track}
    (job / "scores.json").write_text(json.dumps(scores))


def test_cli_reads_multiruns_and_evaluate_output(tmp_path, capsys):
    """A multirun of 2 heads x 2 seeds (systems from overrides other than the seed), and a
    mir.evaluate-style per_track.json (a peer), compared on one metric; files written."""
    sweep = tmp_path / "sweep"
    rng = np.random.default_rng(0)
    tracks = ["embedded/a", "embedded/b", "embedded/c", "embedded/d"]
    n = 0
    for task in ("[melody]", "[multif0,melody]"):
        for seed in (0, 1):
            rows = [{"track": t, "Overall Accuracy": float(rng.uniform())} for t in tracks]
            _job(
                sweep, str(n), [f"task={task}", f"seed={seed}", "threads=2"], seed, {"melody": rows}
            )
            n += 1
    peer = tmp_path / "peer"
    peer.mkdir()
    rows = [{"track": t, "Overall Accuracy": 0.5} for t in tracks]
    (peer / "per_track.json").write_text(json.dumps({"basic-pitch": {"melody": rows}}))
    out = tmp_path / "cmp" / "table"
    assert main(["compare", str(sweep), f"bp={peer}", "--out", str(out)]) == 0
    md = capsys.readouterr().out
    assert "| task=[melody] | 0,1 |" in md
    assert "| task=[multif0,melody] | 0,1 |" in md
    assert "| bp/basic-pitch | - |" in md
    assert "* seeds `-`: a run that records no seed" in md
    assert "melody Overall Accuracy (4 tracks)" in md
    assert "* 4 track(s): a bootstrap over so few values gives intervals" in md
    assert "cannot fall below 0.125" in md
    result = json.loads(out.with_suffix(".json").read_text())
    assert len(result["rows"][0]["pairs"]) == 3
    assert out.with_suffix(".md").read_text().strip() == md.strip()
    csv = out.with_suffix(".csv").read_text().splitlines()
    assert csv[0].startswith("kind,task,metric,system,other,value,ci_low,ci_high")
    assert len(csv) == 1 + 3 + 3

    # --by a key that is only in the overrides (no .hydra/config.yaml here): the same systems
    assert main(["compare", str(sweep), "--by", "task"]) == 0
    assert "| task=[melody] | 0,1 |" in capsys.readouterr().out


def test_seeds_of_one_multirun_are_one_system(tmp_path, capsys):
    """A seed sweep (only `seed` differs) is one system named after its folder; two such
    sweeps given side by side are two systems."""
    for name, offset in (("small", 0.0), ("large", 0.2)):
        for seed in (0, 1, 2):
            rows = [{"track": t, "Overall Accuracy": offset + 0.01 * seed} for t in "abcd"]
            _job(tmp_path / name, str(seed), [f"seed={seed}", "threads=2"], seed, {"melody": rows})
    assert main(["compare", str(tmp_path / "small"), str(tmp_path / "large")]) == 0
    md = capsys.readouterr().out
    assert "| small | 0,1,2 |" in md
    assert "| large | 0,1,2 |" in md
    assert "| melody Overall Accuracy | small | large | -0.200 [-0.200, -0.200] |" in md


def test_cli_by_key_and_errors(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for i, (lr, seed) in enumerate([(1, 0), (1, 1), (3, 0), (3, 1)]):
        rows = [{"track": t, "Overall Accuracy": 0.1 * i + 0.01 * j} for j, t in enumerate("abc")]
        _job(sweep, str(i), [f"model.optimizer.lr={lr}e-3", f"seed={seed}"], seed, {"melody": rows})
        (sweep / str(i) / ".hydra" / "config.yaml").write_text(
            f"seed: {seed}\nmodel:\n  optimizer:\n    lr: {lr}e-3\n"
        )
    assert main(["compare", str(sweep), "--by", "model.optimizer.lr"]) == 0
    md = capsys.readouterr().out
    assert "| model.optimizer.lr=1e-3 | 0,1 |" in md
    assert main(["compare", str(sweep), "--by", "model.nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert "--by model.nope: no such key" in err
    assert len(err.splitlines()) == 1
    assert main(["compare", str(tmp_path / "nowhere")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_wandb_table_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    x = np.random.default_rng(0).uniform(0, 1, (2, 4))
    result = cmp.compare(_runs("a", x) + _runs("b", x + 0.1))
    where = cmp.log_wandb(result, tmp_path)
    assert Path(where).is_relative_to(tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert runs
    assert runs[0].stat().st_size > 0


def test_peer_nussl_per_system_folders_give_seeds_to_compare(tmp_path, capsys):
    """`benchmarks/peer_nussl.py`'s per-track writer: NAME@SEED systems land in one folder
    each with their seed, so `compare` reads a model's seeds as one system beside a peer."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_nussl.py"
    spec = importlib.util.spec_from_file_location("peer_nussl", path)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    assert peer.system_folder("unet@2") == ("unet", 2, "unet-seed2")
    assert peer.system_folder("REPET") == ("REPET", None, "REPET")
    systems = {f"unet@{s}": {"vocals/SI-SDR": 1.0 + s} for s in (0, 1, 2)}
    systems["REPET"] = {"vocals/SI-SDR": 5.0}
    peer.write_per_track({"track": "Music Delta - 80s Rock", "systems": systems}, tmp_path)
    whole = json.loads((tmp_path / "per_track.json").read_text())
    assert set(whole) == {"unet@0", "unet@1", "unet@2", "REPET"}
    args = [f"unet={tmp_path / f'unet-seed{s}'}" for s in (0, 1, 2)]
    assert (
        main(
            [
                "compare",
                *args,
                f"REPET={tmp_path / 'REPET'}",
                "--metric",
                "separation/vocals/SI-SDR",
            ]
        )
        == 0
    )
    md = capsys.readouterr().out
    assert "| unet | 0,1,2 | 2.000 [" in md
    assert "| REPET | - | 5.000 [-, -] |" in md
    assert "| separation vocals/SI-SDR | unet | REPET | -3.000 [" in md


def test_identical_baselines_of_two_models_are_one_row():
    """The mixture baseline evaluated beside two models is one system, with a note; a
    baseline that differs stays."""
    rng = np.random.default_rng(2)
    x, y, mix = rng.uniform(0, 1, (3, 5)), rng.uniform(0, 1, (3, 5)), rng.uniform(0, 1, (3, 5))
    runs = _runs("a", x) + _runs("a/baseline", mix) + _runs("b", y) + _runs("b/baseline", mix)
    result = cmp.compare(runs)
    row = result["rows"][0]
    assert list(row["systems"]) == ["a", "a/baseline", "b"]
    assert row["merged"] == {"a/baseline": ["b/baseline"]}
    assert ("a/baseline", "b/baseline") not in [(p["a"], p["b"]) for p in row["pairs"]]
    md = cmp.markdown(result)
    assert "* a/baseline: also stands for b/baseline (the same scores)" in md
    assert "| b/baseline |" not in md
    result = cmp.compare(runs[:-3] + _runs("b/baseline", mix + 0.1))
    assert list(result["rows"][0]["systems"]) == ["a", "a/baseline", "b", "b/baseline"]
