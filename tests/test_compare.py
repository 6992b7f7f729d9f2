"""`dontstop compare`: means, sample stds, deltas and Welch's t-test over seeds, and refusing incomparable runs."""

from __future__ import annotations

import json
import math
import os

import pytest

from dontstop import cli
from dontstop.compare import compare_runs, load_run, main, to_markdown, welch
from dontstop.errors import UsageError


def write_run(directory, scores: dict[str, list[float]], split="test", sha="abc", seeds=None, **overrides):
    """A fake `dontstop finetune` output directory: one seed per position in each metric's score list."""
    os.makedirs(directory, exist_ok=True)
    n = len(next(iter(scores.values())))
    seeds = seeds or [42 + i for i in range(n)]
    file = {"path": "eval.jsonl", "sha256": sha, "examples": 100}
    results = {
        "task_type": "single_label",
        "model": f"models/{os.path.basename(str(directory))}",
        "labels": ["games", "net"],
        "primary_metric": "macro_f1",
        "metrics": list(scores),
        "validation_file": file,
        "test_file": file if split == "test" else None,
        "seeds": [
            {"seed": s, "best_epoch": 1, "epochs_run": 2, "train_examples": 10, "train_seconds": 1.0}
            | {"dev": {m: v[i] for m, v in scores.items()}}
            | ({"test": {m: v[i] for m, v in scores.items()}} if split == "test" else {"test": None})
            for i, s in enumerate(seeds)
        ],
        "wall_seconds": 3.0,
        **overrides,
    }
    with open(os.path.join(directory, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f)
    return str(directory)


@pytest.fixture
def base_and_dapt(tmp_path):
    base = write_run(tmp_path / "base", {"accuracy": [0.80, 0.82, 0.84], "macro_f1": [0.70, 0.74, 0.72]})
    dapt = write_run(tmp_path / "dapt", {"accuracy": [0.89, 0.90, 0.91], "macro_f1": [0.75, 0.77, 0.79]})
    return base, dapt


def test_means_sample_stds_and_deltas_by_hand(base_and_dapt):
    comparison = compare_runs([load_run(d) for d in base_and_dapt])
    base, dapt = comparison["runs"]
    assert [base["name"], dapt["name"]] == ["base", "dapt"]
    assert comparison["metrics"] == ["accuracy", "macro_f1"]
    assert base["metrics"]["accuracy"]["mean"] == pytest.approx(0.82)
    assert base["metrics"]["accuracy"]["std"] == pytest.approx(0.02)  # ddof=1: sqrt((0.02² + 0 + 0.02²) / 2)
    assert dapt["metrics"]["macro_f1"]["std"] == pytest.approx(0.02)
    assert dapt["metrics"]["accuracy"]["delta"] == pytest.approx(0.90 - 0.82)
    assert dapt["metrics"]["macro_f1"]["delta"] == pytest.approx(0.77 - 0.72)
    assert dapt["metrics"]["macro_f1"]["values"] == [0.75, 0.77, 0.79]
    assert dapt["same_seeds"] is True


def test_welch_matches_a_hand_computation():
    a, b = [0.70, 0.72, 0.75, 0.71], [0.74, 0.80, 0.77]
    ma, mb = sum(a) / 4, sum(b) / 3
    va = sum((x - ma) ** 2 for x in a) / 3
    vb = sum((x - mb) ** 2 for x in b) / 2
    se = math.sqrt(va / 4 + vb / 3)
    df = (va / 4 + vb / 3) ** 2 / ((va / 4) ** 2 / 3 + (vb / 3) ** 2 / 2)
    from scipy import stats

    p = 2 * stats.t.sf(abs((mb - ma) / se), df)
    half = stats.t.ppf(0.975, df) * se
    result = welch(a, b)
    assert result["delta"] == pytest.approx(mb - ma)
    assert result["df"] == pytest.approx(df)
    assert result["p_value"] == pytest.approx(p)
    assert result["p_value"] == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((mb - ma - half, mb - ma + half))


def test_identical_runs_give_zero_delta_and_p_one(tmp_path):
    scores = {"macro_f1": [0.70, 0.74, 0.72]}
    runs = [load_run(write_run(tmp_path / "a", scores)), load_run(write_run(tmp_path / "b", scores))]
    stats = compare_runs(runs)["runs"][1]["metrics"]["macro_f1"]
    assert stats["delta"] == pytest.approx(0)
    assert stats["p_value"] == pytest.approx(1)
    assert not stats["significant"]


def test_no_variance_or_one_seed_makes_p_not_available():
    flat = welch([0.7, 0.7, 0.7], [0.8, 0.8, 0.8])
    assert flat["delta"] == pytest.approx(0.1) and flat["p_value"] is None
    assert flat["p_note"] == "no variance on either side" and not flat["significant"]
    single = welch([0.7], [0.8, 0.9])
    assert single["p_value"] is None and single["p_note"] == "fewer than 2 seeds on a side"


def test_single_seed_std_is_shown_as_not_available(tmp_path):
    runs = [load_run(write_run(tmp_path / n, {"accuracy": [v]})) for n, v in (("a", 0.5), ("b", 0.6))]
    comparison = compare_runs(runs)
    assert comparison["runs"][0]["metrics"]["accuracy"]["std"] is None
    table = to_markdown(comparison)
    assert "50.0 ± n/a" in table and "+10.0 (p n/a)" in table and "fewer than 2 seeds" in table


def test_a_clearly_better_run_is_significant_and_starred(base_and_dapt):
    comparison = compare_runs([load_run(d) for d in base_and_dapt], metrics=["accuracy"])
    stats = comparison["runs"][1]["metrics"]["accuracy"]
    assert stats["p_value"] < 0.05 and stats["significant"]
    assert stats["ci_low"] > 0
    table = to_markdown(comparison)
    row = next(line for line in table.splitlines() if line.startswith("| dapt"))
    assert "90.0 ± 1.0" in row and "+8.0 (p=" in row and "*)" in row
    assert "Welch's t-test" in table and "* p < 0.05" in table and "the same as base" in table


def test_a_different_test_file_is_refused_unless_allowed(tmp_path):
    base = write_run(tmp_path / "base", {"accuracy": [0.8, 0.9]})
    other = write_run(tmp_path / "other", {"accuracy": [0.8, 0.9]}, sha="def")
    with pytest.raises(UsageError, match="other.*different test file.*--allow_different_data"):
        main([base, other])
    assert main([base, other, "--allow_different_data"]) == 0


def test_different_labels_or_task_are_refused(tmp_path):
    base = write_run(tmp_path / "base", {"accuracy": [0.8, 0.9]})
    labels = write_run(tmp_path / "labels", {"accuracy": [0.8, 0.9]}, labels=["a", "b"])
    task = write_run(tmp_path / "task", {"accuracy": [0.8, 0.9]}, task_type="multi_label")
    with pytest.raises(UsageError, match="labels.*labels differ"):
        main([base, labels])
    with pytest.raises(UsageError, match="task.*task_type multi_label"):
        main([base, task])


def test_missing_or_malformed_results_name_the_file(tmp_path):
    base = write_run(tmp_path / "base", {"accuracy": [0.8, 0.9]})
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"empty[/\\]results\.json: no such file"):
        main([base, str(tmp_path / "empty")])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text('{"task_type": ')
    with pytest.raises(UsageError, match=r"broken[/\\]results\.json:1: invalid JSON"):
        main([base, str(tmp_path / "broken")])


def test_unknown_metric_names_it_and_the_available_ones(base_and_dapt):
    with pytest.raises(UsageError, match=r"unknown metric\(s\) f1 \(available: accuracy, macro_f1\)"):
        main([*base_and_dapt, "--metrics", "macro_f1,f1"])


def test_no_test_results_suggests_dev(tmp_path, capsys):
    base = write_run(tmp_path / "base", {"accuracy": [0.8, 0.9]}, split="dev")
    other = write_run(tmp_path / "other", {"accuracy": [0.7, 0.8]}, split="dev")
    with pytest.raises(UsageError, match="base: no test results.*--split dev"):
        main([base, other])
    assert main([base, other, "--split", "dev"]) == 0
    assert "-10.0" in capsys.readouterr().out


def test_duplicate_names_ask_for_name_equals_dir(tmp_path):
    first = write_run(tmp_path / "a" / "ft", {"accuracy": [0.8, 0.9]})
    second = write_run(tmp_path / "b" / "ft", {"accuracy": [0.8, 0.9]})
    with pytest.raises(UsageError, match="named 'ft'.*NAME=DIR"):
        main([first, second])
    assert main([f"one={first}", f"two={second}"]) == 0


def test_main_prints_a_markdown_table(base_and_dapt, capsys):
    assert main([f"roberta={base_and_dapt[0]}", base_and_dapt[1], "--metrics", "macro_f1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| run | seeds | macro_f1 | Δ macro_f1 |"
    assert out[2] == "| roberta | 3 | 72.0 ± 2.0 | baseline |"
    assert out[3].startswith("| dapt | 3 | 77.0 ± 2.0 | +5.0 (p=")
    assert any("models/dapt" in line for line in out)


def test_json_format(base_and_dapt, capsys):
    assert main([*base_and_dapt, "--format", "json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert comparison["baseline"] == "base" and comparison["split"] == "test"
    dapt = comparison["runs"][1]
    assert dapt["seeds"] == [42, 43, 44] and dapt["model"] == "models/dapt"
    assert set(dapt["metrics"]["accuracy"]) >= {"mean", "std", "n", "values", "delta", "ci_low", "ci_high"}
    assert dapt["metrics"]["accuracy"]["significant"] is True


def test_output_dir_writes_both_files_and_refuses_a_non_empty_one(base_and_dapt, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*base_and_dapt, "--output_dir", str(out)]) == 0
    assert json.loads((out / "compare.json").read_text())["runs"][1]["name"] == "dapt"
    assert (out / "compare.md").read_text().startswith("| run | seeds |")
    with pytest.raises(UsageError, match="not empty"):
        main([*base_and_dapt, "--output_dir", str(out)])
    assert main([*base_and_dapt, "--output_dir", str(out), "--overwrite_output_dir"]) == 0


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "dontstop compare" in out and "examples:" in out and "--allow_different_data" in out


def test_cli_turns_bad_input_into_one_line_and_status_2(tmp_path, capsys):
    base = write_run(tmp_path / "base", {"accuracy": [0.8, 0.9]})
    missing = str(tmp_path / "missing")
    assert cli.main(["compare", base, missing]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dontstop compare: error:") and "results.json" in err[0]
