import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kirinuki.qc.compare import (CompareError, decide_gate, load_per_image, paired_compare, run_compare,
                              to_markdown)
from kirinuki.core.config import CompareParams, load_thresholds
from kirinuki.qc.floors import check_floors, read_summary

PARAMS = CompareParams(metrics=["instance_iou"], alpha=0.05, min_pairs=6, n_boot=2000)
BASE = [0.50, 0.62, 0.71, 0.40, 0.83, 0.55, 0.66, 0.90, 0.35, 0.77]
# mixed signs, one tie (zero difference) and repeated magnitudes
DIFF = [0.10, 0.04, -0.02, 0.07, 0.0, 0.12, 0.04, -0.01, 0.09, 0.05]


def table(values, names=None, metric="instance_iou", **more):
    names = names or [f"p{i:02d}" for i in range(len(values))]
    return pd.DataFrame({"image": names, metric: values, **more})


def shifted(diff, **more):
    return table([b + d for b, d in zip(BASE, diff)], **more)


# --- paired_compare -----------------------------------------------------------------------

def test_matches_scipy_on_fixed_data():
    res = paired_compare(table(BASE), shifted(DIFF), PARAMS)
    r = res["metrics"]["instance_iou"]
    cand, base = np.array(shifted(DIFF)["instance_iou"]), np.array(BASE)
    assert r["wilcoxon_p"] == stats.wilcoxon(cand - base, zero_method="wilcox").pvalue
    assert r["t_p"] == pytest.approx(stats.ttest_rel(cand, base).pvalue)
    assert r["p_value"] == r["wilcoxon_p"] == r["p_adjusted"]  # one metric: nothing to adjust
    assert r["n_pairs"] == 10
    assert r["mean_diff"] == pytest.approx(np.mean(DIFF))
    assert r["median_diff"] == pytest.approx(np.median(DIFF))
    assert r["baseline_mean"] == pytest.approx(np.mean(BASE))
    assert r["candidate_mean"] == pytest.approx(np.mean(BASE) + np.mean(DIFF))
    assert r["cohens_dz"] == pytest.approx(np.mean(DIFF) / np.std(DIFF, ddof=1))
    assert r["ci_low"] < np.mean(DIFF) < r["ci_high"]
    assert (r["n_improved"], r["n_worse"], r["n_tied"]) == (7, 2, 1)
    assert r["verdict"] == res["verdict"] == "improved" and "better" in res["reason"]
    json.dumps(res, allow_nan=False)


def test_regressed():
    res = paired_compare(table(BASE), shifted([-d for d in DIFF]), PARAMS)
    r = res["metrics"]["instance_iou"]
    assert res["verdict"] == "regressed" and r["mean_diff"] < 0 and r["rank_biserial"] < 0
    assert "worse" in res["reason"] and "p = " in res["reason"]


def test_the_chosen_test_decides():
    # one image loses a lot, nine gain a little: the mean falls, most ranks rise
    diff = [0.01, 0.02, 0.01, 0.03, 0.02, 0.01, 0.02, 0.03, 0.01, -0.6]
    by_rank = paired_compare(table(BASE), shifted(diff), PARAMS)["metrics"]["instance_iou"]
    by_mean = paired_compare(table(BASE), shifted(diff),
                             PARAMS.model_copy(update={"test": "t"}))["metrics"]["instance_iou"]
    assert by_rank["p_value"] == by_rank["wilcoxon_p"] and by_mean["p_value"] == by_mean["t_p"]
    assert by_rank["verdict"] == by_mean["verdict"] == "no detectable change"


def test_no_detectable_change_says_how_many_images_are_needed():
    res = paired_compare(table(BASE), shifted([0.02, -0.03, 0.01, -0.01, 0.03, -0.02, 0.0, 0.02, -0.02, 0.01]), PARAMS)
    r = res["metrics"]["instance_iou"]
    assert r["p_value"] > 0.05 and res["verdict"] == "no detectable change"
    assert r["mde_dz"] > 0 and r["mde"] == pytest.approx(r["mde_dz"] * r["sd_diff"])
    assert r["n_needed"] > 10 and r["n_more"] == r["n_needed"] - 10
    assert f"needs about {r['n_needed']} paired images ({r['n_more']} more)" in res["reason"]


def test_all_differences_zero():
    res = paired_compare(table(BASE), table(BASE), PARAMS)
    r = res["metrics"]["instance_iou"]
    assert r["wilcoxon_p"] == 1.0 and r["t_p"] == 1.0 and r["n_tied"] == 10
    assert (r["ci_low"], r["ci_high"]) == (0.0, 0.0) and r["cohens_dz"] is None and r["n_needed"] is None
    assert res["verdict"] == "no detectable change" and "identical on all 10" in res["reason"]
    json.dumps(res, allow_nan=False)


def test_holm_adjustment_across_metrics():
    """A borderline regression of one metric is not significant once a second metric is tested."""
    diff = [-0.01, -0.02, 0.03, -0.04, 0.05, -0.06, -0.07, -0.08, -0.09, -0.10]  # W+ = 3 + 5: p = 0.049
    base = table(BASE, union_iou=BASE)
    cand = shifted(diff, union_iou=BASE)  # union unchanged
    alone = paired_compare(base, cand, PARAMS)
    both = paired_compare(base, cand, PARAMS.model_copy(update={"metrics": ["instance_iou", "union_iou"]}))
    p = alone["metrics"]["instance_iou"]["p_value"]
    assert 0.025 < p < 0.05 and alone["verdict"] == "regressed"
    assert both["metrics"]["instance_iou"]["p_adjusted"] == pytest.approx(2 * p)
    assert both["verdict"] == "no detectable change" and "Holm" in both["reason"]
    # the power check assumes Holm's first step, alpha / 2
    assert both["metrics"]["instance_iou"]["mde_dz"] > alone["metrics"]["instance_iou"]["mde_dz"]


def test_any_regressed_metric_wins_the_overall_verdict():
    base = table(BASE, union_iou=BASE)
    cand = shifted(DIFF, union_iou=[b - 0.1 - d for b, d in zip(BASE, DIFF)])
    res = paired_compare(base, cand, PARAMS.model_copy(update={"metrics": ["instance_iou", "union_iou"]}))
    assert res["metrics"]["instance_iou"]["verdict"] == "improved"
    assert res["metrics"]["union_iou"]["verdict"] == "regressed" and res["verdict"] == "regressed"


def test_too_few_samples():
    res = paired_compare(table(BASE[:3]), shifted(DIFF[:3]), PARAMS)
    r = res["metrics"]["instance_iou"]
    assert r["n_pairs"] == 3 and r["p_value"] is None and r["wilcoxon_p"] is not None
    assert res["verdict"] == "too few samples" and "6" in res["reason"]


def test_no_baseline():
    res = paired_compare(None, table(BASE), PARAMS)
    assert res["verdict"] == "no baseline"
    assert res["metrics"]["instance_iou"]["candidate_mean"] == pytest.approx(np.mean(BASE))
    assert "nothing to compare" in to_markdown(res)
    json.dumps(res, allow_nan=False)


def test_lower_is_better_metric_flips_direction():
    params = CompareParams(metrics=["fp"], min_pairs=6, n_boot=200)
    base = table([3, 2, 4, 1, 5, 2, 3, 4], metric="fp")
    cand = table([1, 0, 2, 0, 1, 1, 0, 1], metric="fp")
    res = paired_compare(base, cand, params)
    r = res["metrics"]["fp"]
    assert r["mean_diff"] < 0 and r["n_improved"] == 8 and res["verdict"] == "improved"
    assert not r["higher_is_better"]


def test_unpaired_images_and_nan_pairs():
    base = table([0.5, 0.6, np.nan, 0.7], names=["a", "b", "c", "old"])
    cand = table([0.6, 0.7, 0.8, 0.9], names=["a", "b", "c", "new"])
    res = paired_compare(base, cand, PARAMS)
    r = res["metrics"]["instance_iou"]
    assert res["only_baseline"] == ["old"] and res["only_candidate"] == ["new"]
    assert r["n_pairs"] == 2 and r["n_dropped_nan"] == 1
    assert r["candidate_mean"] == pytest.approx(0.65)  # over the pairs only


def test_missing_metric_column():
    with pytest.raises(CompareError, match="no column 'instance_iou'"):
        paired_compare(table(BASE, metric="union_iou"), table(BASE), PARAMS)


def test_a_table_without_pages_says_so():
    with pytest.raises(CompareError, match="candidate: no pages"):
        paired_compare(table(BASE), table(BASE).iloc[0:0], PARAMS)


def test_params_reject_a_repeated_metric_and_power_below_alpha():
    with pytest.raises(ValueError, match="listed twice"):
        CompareParams(metrics=["instance_iou", "instance_iou"])
    with pytest.raises(ValueError, match="power must be above alpha"):
        CompareParams(alpha=0.1, power=0.05)


def test_markdown_report():
    base = table(BASE + [0.1], names=[f"p{i:02d}" for i in range(10)] + ["gone"])
    md = to_markdown(paired_compare(base, shifted(DIFF), PARAMS))
    assert "statistics: improved" in md and "| instance_iou ↑ |" in md and "Only in baseline (1): gone" in md
    assert "Sample size at 80% power" in md and "Cohen's dz" in md
    many = table([0.5] * 30, names=[f"x{i}" for i in range(30)])
    md = to_markdown(paired_compare(many, table(BASE), PARAMS))
    assert "… and 10 more" in md and "too few samples" in md


# --- gate ---------------------------------------------------------------------------------

def floor(metric, value, limit, ok, op=">="):
    return {"metric": metric, "value": value, "op": op, "limit": limit, "ok": ok}


def test_gate_fails_on_regression_or_floor_and_says_why():
    regressed = paired_compare(table(BASE), shifted([-d for d in DIFF]), PARAMS)
    improved = paired_compare(table(BASE), shifted(DIFF), PARAMS)
    gate = decide_gate(regressed, None)
    assert not gate["passed"] and "instance_iou is worse" in gate["reasons"][0]
    gate = decide_gate(improved, [floor("recall", 0.2, 0.35, False), floor("precision", 0.5, 0.3, True)])
    assert gate == {"passed": False, "reasons": ["floor: recall = 0.2000 is below the limit 0.35"]}
    gate = decide_gate(improved, [floor("empty_page_fp_rate", None, 0.8, False, "<=")])
    assert gate["reasons"] == ["floor: empty_page_fp_rate was not measured (limit <= 0.8)"]
    gate = decide_gate(improved, [floor("precision", 0.5, 0.3, True)])
    assert gate == {"passed": True, "reasons": ["no significant regression (verdict: improved)", "all 1 floors met"]}
    assert decide_gate(paired_compare(None, table(BASE), PARAMS), None)["passed"]


# --- loading ------------------------------------------------------------------------------

def write_csv(path, values, names=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    table(values, names).to_csv(path, index=False)


def test_load_from_file_and_folder(tmp_path):
    csv = tmp_path / "run" / "per_image.csv"
    write_csv(csv, [0.5, 0.6], names=["001", "002"])
    for source in (str(csv), str(csv.parent)):
        t = load_per_image(source, tmp_path / "x.csv")
        assert t["image"].tolist() == ["001", "002"]  # names are not parsed as numbers
        assert t["instance_iou"].tolist() == [0.5, 0.6]
    with pytest.raises(CompareError, match="per_image.csv"):
        load_per_image(str(tmp_path), tmp_path / "x.csv")


def test_load_bad_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("")
    with pytest.raises(CompareError, match="not a readable CSV"):
        load_per_image(str(bad), bad)
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(CompareError, match="no 'image' column"):
        load_per_image(str(bad), bad)


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com",
                    "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                   cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A git repo with three commits: no CSV, CSV v1, CSV v2 (the working tree holds v2)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git(tmp_path, "init", "-q")
    (tmp_path / "README").write_text("x\n")
    git(tmp_path, "add", "README")
    git(tmp_path, "commit", "-q", "-m", "start")
    csv = tmp_path / "qc" / "per_image.csv"
    for n, values in enumerate(([0.1, 0.2], [0.3, 0.4]), 1):
        write_csv(csv, values)
        git(tmp_path, "add", "qc/per_image.csv")
        git(tmp_path, "commit", "-q", "-m", f"v{n}")
    return tmp_path


def test_load_from_git_revisions(repo):
    csv = repo / "qc" / "per_image.csv"
    assert load_per_image("HEAD", csv)["instance_iou"].tolist() == [0.3, 0.4]
    assert load_per_image("HEAD~1", csv)["instance_iou"].tolist() == [0.1, 0.2]
    assert load_per_image("main~2", csv) is None  # the revision predates the file


def test_load_unknown_revision(repo):
    with pytest.raises(CompareError, match="nor a git revision"):
        load_per_image("no-such-branch", repo / "qc" / "per_image.csv")


def test_load_revision_outside_a_repository(tmp_path):
    with pytest.raises(CompareError, match="not in a git repository"):
        load_per_image("HEAD", tmp_path / "per_image.csv")


# --- run_compare --------------------------------------------------------------------------

@pytest.mark.parametrize("diff, code, verdict", [
    (DIFF, 0, "improved"),
    ([-d for d in DIFF], 1, "regressed"),
    ([0.0] * 10, 0, "no detectable change"),
])
def test_run_compare_exit_codes(tmp_path, capsys, diff, code, verdict):
    base, cand = tmp_path / "base.csv", tmp_path / "cand" / "per_image.csv"
    table(BASE).to_csv(base, index=False)
    cand.parent.mkdir()
    shifted(diff).to_csv(cand, index=False)
    json_out, md_out = tmp_path / "r" / "compare.json", tmp_path / "r" / "compare.md"
    assert run_compare(cand, str(base), PARAMS, json_out, md_out) == code
    assert json.loads(json_out.read_text())["verdict"] == verdict
    md = md_out.read_text()
    assert f"Verdict: {verdict}" in md and capsys.readouterr().out == md


def test_run_compare_without_baseline_in_git(repo, tmp_path):
    out = tmp_path / "reports"
    assert run_compare(repo / "qc" / "per_image.csv", "HEAD~2", PARAMS, out / "c.json", out / "c.md") == 0
    assert json.loads((out / "c.json").read_text())["verdict"] == "no baseline"


def write_run(folder, diff, summary):
    """A candidate run folder: per_image.csv and validate.json."""
    folder.mkdir(parents=True)
    shifted(diff).to_csv(folder / "per_image.csv", index=False)
    (folder / "validate.json").write_text(json.dumps(summary))
    return folder / "per_image.csv"


def test_run_compare_floors(tmp_path, capsys):
    base = tmp_path / "base.csv"
    table(BASE).to_csv(base, index=False)
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("at_least:\n  instance_miou: 0.5\n  recall: 0.4\nat_most:\n  empty_page_fp_rate: 0.5\n")
    out = tmp_path / "r"

    good = write_run(tmp_path / "good", DIFF, {"instance_miou": 0.62, "recall": 0.8, "empty_page_fp_rate": 0.5})
    assert run_compare(good, str(base), PARAMS, out / "c.json", out / "c.md", thresholds=thresholds) == 0
    result = json.loads((out / "c.json").read_text())
    assert result["gate"]["passed"] and [c["ok"] for c in result["floors"]["checks"]] == [True, True, True]
    assert result["floors"]["summary"] == str(good.with_name("validate.json"))

    # statistically unchanged, but below a floor: the gate fails and the report says which
    bad = write_run(tmp_path / "bad", [0.0] * 10, {"instance_miou": 0.45, "recall": 0.8, "empty_page_fp_rate": 0.6})
    assert run_compare(bad, str(base), PARAMS, out / "c.json", out / "c.md", thresholds=thresholds) == 1
    result = json.loads((out / "c.json").read_text())
    assert result["verdict"] == "no detectable change" and not result["gate"]["passed"]
    assert result["gate"]["reasons"] == ["floor: instance_miou = 0.4500 is below the limit 0.5",
                                         "floor: empty_page_fp_rate = 0.6000 is above the limit 0.5"]
    md = (out / "c.md").read_text()
    assert "❌ failed · statistics: no detectable change · floors: 1 of 3 met" in md and "Gate: FAILED" in md
    assert "| instance_miou | 0.4500 | >= 0.5 | ❌ |" in md
    capsys.readouterr()


def test_run_compare_bad_floor_inputs_name_the_file(tmp_path):
    cand = write_run(tmp_path / "run", DIFF, {"instance_miou": 0.6})
    out = tmp_path / "r"
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text("at_least:\n  instance_mIoU: 0.5\n")
    with pytest.raises(CompareError, match=r"t.yaml: at_least.instance_mIoU: unknown key"):
        run_compare(cand, str(cand), PARAMS, out / "c.json", out / "c.md", thresholds=thresholds)
    thresholds.write_text("at_least:\n  recall: 1.5\n")
    with pytest.raises(CompareError, match=r"at_least.recall: Input should be less than or equal to 1"):
        run_compare(cand, str(cand), PARAMS, out / "c.json", out / "c.md", thresholds=thresholds)
    thresholds.write_text("at_least:\n  recall: 0.5\n")
    with pytest.raises(CompareError, match=r"nope.json: no such metrics file"):
        run_compare(cand, str(cand), PARAMS, out / "c.json", out / "c.md", thresholds=thresholds,
                    summary=tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CompareError, match=r"broken.json: not a readable metrics JSON"):
        run_compare(cand, str(cand), PARAMS, out / "c.json", out / "c.md", thresholds=thresholds,
                    summary=tmp_path / "broken.json")
    assert not out.exists()  # nothing half-written


def test_committed_floors_load_and_hold_for_the_committed_metrics():
    """qc/thresholds.yaml is valid and the sample-data metrics committed beside it meet it."""
    root = Path(__file__).resolve().parents[1]
    checks = check_floors(read_summary(root / "metrics" / "validate.json"),
                          load_thresholds(root / "qc" / "thresholds.yaml"))
    assert len(checks) >= 5 and all(c["ok"] for c in checks), checks
