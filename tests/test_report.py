"""The multirun collector: synthetic job folders -> one Markdown table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mir.errors import ConfigError
from mir.report import collect_multirun, main, parse_column, subset_table


def _job(root: Path, name: str, overrides: list[str], test: dict | None) -> None:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if test is not None:
        base = {t: {k: 0.0 for k in m} for t, m in test.items()}
        scores = {"monitor": "val/x/y", "val": test, "test": test, "test_baseline": base}
        (job / "scores.json").write_text(json.dumps(scores))


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    f0 = {"Overall Accuracy": 0.5, "Raw Pitch Accuracy": 0.4}
    _job(tmp_path, "0", ["task=[multif0]"], {"multif0": {"Accuracy": 0.25, "Precision": 0.3}})
    _job(tmp_path, "1", ["task=[melody]"], {"melody": f0})
    _job(
        tmp_path,
        "10",
        ["task=[multif0,melody]"],
        {"multif0": {"Accuracy": 0.375}, "melody": {**f0, "Overall Accuracy": 0.625}},
    )
    _job(tmp_path, "2", ["task=[bass]"], None)  # a failed job: no scores.json
    (tmp_path / "multirun.yaml").write_text("{}\n")  # Hydra's own file, not a job
    return tmp_path


def test_collect_reads_jobs_in_number_order(multirun: Path) -> None:
    rows = collect_multirun(multirun)
    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]
    assert rows[3]["tasks"] == ["multif0", "melody"]
    assert rows[3]["overrides"] == ["task=[multif0,melody]"]
    assert rows[2]["scores"] is None


def test_table_has_one_row_per_job_and_a_baseline_row(multirun: Path) -> None:
    table = subset_table(collect_multirun(multirun))
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # only the trained tasks' default columns
    assert header == ["job", "heads", "multif0 Acc", "melody OA", "melody RPA"]
    assert len(lines) == 2 + 4 + 1
    row = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")] for ln in lines}
    assert row["0"][1:] == ["multif0", "0.250", "-", "-"]
    assert row["10"][1:] == ["multif0 + melody", "**0.375**", "**0.625**", "**0.400**"]
    assert row["1"][1:] == ["melody", "-", "0.500", "**0.400**"]
    assert row["2"][1] == "[bass]"
    assert "(no scores)" in row["2"]
    assert lines[-1].split("|")[2].strip() == "trivial baseline"
    assert lines[-1].count("0.000") == 3


def test_custom_columns_and_extra_overrides(tmp_path: Path) -> None:
    _job(tmp_path, "0", ["task=[melody]", "seed=1", "lr=2"], {"melody": {"Voicing Recall": 0.9}})
    _job(tmp_path, "1", ["task=[melody]", "seed=2", "lr=2"], {"melody": {"Voicing Recall": 0.8}})
    table = subset_table(
        collect_multirun(tmp_path), [parse_column("melody/Voicing Recall")], baseline=False
    )
    lines = table.splitlines()
    assert lines[0] == "All jobs: `lr=2`"  # shared overrides: above the table
    assert lines[2] == "| job | heads | overrides | melody VR |"
    assert lines[4] == "| 0 | melody | seed=1 | **0.900** |"
    assert lines[5] == "| 1 | melody | seed=2 | 0.800 |"


def test_cli_writes_the_table(multirun: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "t" / "table.md"
    assert main(["collect", str(multirun), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert out.read_text().strip() == printed.out.strip()
    assert "no scores.json in 2" in printed.err


def test_errors_name_the_problem(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        collect_multirun(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no job folders"):
        collect_multirun(tmp_path)
    _job(tmp_path, "0", ["task=[melody]"], None)
    (tmp_path / "0" / "scores.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"0/scores.json: not valid JSON"):
        collect_multirun(tmp_path)
    with pytest.raises(ConfigError, match="not <task>/<metric>"):
        parse_column("Accuracy")
    assert main(["collect", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_joins_several_multiruns(multirun: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "seed1"
    _job(other, "0", ["task=[melody]", "seed=1"], {"melody": {"Overall Accuracy": 0.75}})
    assert main(["collect", str(multirun), str(other), "--no-baseline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| job | heads | overrides | multif0 Acc | melody OA")
    assert lines[-1].startswith("| seed1/0 | melody | seed=1 | - | **0.750** |")
    assert len(lines) == 2 + 5


def test_median_scores_over_tracks_ignore_nan_and_names() -> None:
    from mir.report import median_scores

    rows = [
        {"track": "a", "vocals/SDR": 1.0, "vocals/SIR": float("nan")},
        {"track": "b", "vocals/SDR": 5.0, "vocals/SIR": 2.0},
        {"track": "c", "vocals/SDR": 3.0, "vocals/SIR": 4.0},
        {"track": "d", "vocals/SDR": 100.0},
    ]
    med = median_scores({"separation": rows})
    assert med == {"separation": {"vocals/SDR": 4.0, "vocals/SIR": 3.0}}


def test_score_tables_say_what_was_scored_and_why_tracks_were_skipped() -> None:
    """An instrumental track (silent vocals), a track without stems and one without f0:
    each task's line counts the tracks it scored and names the others with the reason."""
    import numpy as np

    from mir.data.track import Track
    from mir.report import coverage, score_table
    from mir.tasks.salience import SingleF0Task
    from mir.tasks.separation import SeparationTask

    n = 1000
    tone = np.ones(n, np.float32)
    f0 = (np.arange(3) * 0.1, np.full(3, 220.0))
    stems = {"vocals": tone, "accompaniment": tone}
    song = Track("song", tone, 8000, {"stems": stems, "melody": f0})
    instrumental = Track(
        "instrumental", tone, 8000, {"stems": {"vocals": 0 * tone, "accompaniment": tone}}
    )
    bare = Track("bare", tone, 8000)
    tasks = {"separation": SeparationTask(), "melody": SingleF0Task("melody", voice="melody")}
    cov = coverage(tasks, [song, instrumental, bare])
    assert cov["separation"] == {
        "scored": 1,
        "skipped": [
            {"track": "instrumental", "reason": "vocals stem silent (instrumental track)"},
            {"track": "bare", "reason": "no stems"},
        ],
    }
    assert cov["melody"]["scored"] == 1
    assert [s["reason"] for s in cov["melody"]["skipped"]] == ["no melody annotation"] * 2
    table = score_table({"separation": {"vocals/SDR": 1.0}}, coverage=cov, n_tracks=3)
    assert (
        "separation: 1 of 3 tracks scored; skipped: instrumental (vocals stem silent "
        "(instrumental track)), bare (no stems)" in table
    )
    assert "melody: 1 of 3 tracks scored; skipped: instrumental (no melody annotation)" in table
