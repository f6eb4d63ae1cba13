import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from kirinuki.compare import CompareError, load_per_image, paired_compare, run_compare, to_markdown
from kirinuki.config import CompareParams

PARAMS = CompareParams(metric="instance_iou", alpha=0.05, min_pairs=6)
BASE = [0.50, 0.62, 0.71, 0.40, 0.83, 0.55, 0.66, 0.90, 0.35, 0.77]
# mixed signs, one tie (zero difference) and repeated magnitudes
DIFF = [0.10, 0.04, -0.02, 0.07, 0.0, 0.12, 0.04, -0.01, 0.09, 0.05]


def table(values, names=None, metric="instance_iou"):
    names = names or [f"p{i:02d}" for i in range(len(values))]
    return pd.DataFrame({"image": names, metric: values})


def shifted(diff):
    return table([b + d for b, d in zip(BASE, diff)])


# --- paired_compare -----------------------------------------------------------------------

def test_matches_scipy_wilcoxon_on_fixed_data():
    r = paired_compare(table(BASE), shifted(DIFF), PARAMS)
    diff = np.array(shifted(DIFF)["instance_iou"]) - np.array(BASE)
    assert r["p_value"] == wilcoxon(diff, zero_method="wilcox").pvalue
    assert r["n_pairs"] == 10
    assert r["mean_diff"] == pytest.approx(np.mean(DIFF))
    assert r["median_diff"] == pytest.approx(np.median(DIFF))
    assert r["baseline_mean"] == pytest.approx(np.mean(BASE))
    assert r["candidate_mean"] == pytest.approx(np.mean(BASE) + np.mean(DIFF))
    assert (r["n_improved"], r["n_worse"], r["n_tied"]) == (7, 2, 1)
    assert r["verdict"] == "improved" and "better" in r["reason"]
    json.dumps(r, allow_nan=False)


def test_regressed():
    r = paired_compare(table(BASE), shifted([-d for d in DIFF]), PARAMS)
    assert r["verdict"] == "regressed" and r["mean_diff"] < 0 and "worse" in r["reason"]


def test_no_detectable_change():
    r = paired_compare(table(BASE), shifted([0.02, -0.03, 0.01, -0.01, 0.03, -0.02, 0.0, 0.02, -0.02, 0.01]), PARAMS)
    assert r["p_value"] > 0.05 and r["verdict"] == "no detectable change"


def test_all_differences_zero_gives_p_one():
    r = paired_compare(table(BASE), table(BASE), PARAMS)
    assert r["p_value"] == 1.0 and r["n_tied"] == 10 and r["verdict"] == "no detectable change"


def test_too_few_samples():
    r = paired_compare(table(BASE[:3]), shifted(DIFF[:3]), PARAMS)
    assert r["n_pairs"] == 3 and r["verdict"] == "too few samples" and "6" in r["reason"]


def test_no_baseline():
    r = paired_compare(None, table(BASE), PARAMS)
    assert r["verdict"] == "no baseline" and r["n_pairs"] == 0 and r["p_value"] is None
    assert r["candidate_mean"] == pytest.approx(np.mean(BASE))
    json.dumps(r, allow_nan=False)


def test_lower_is_better_metric_flips_direction():
    params = CompareParams(metric="fp", min_pairs=6)
    base = table([3, 2, 4, 1, 5, 2, 3, 4], metric="fp")
    cand = table([1, 0, 2, 0, 1, 1, 0, 1], metric="fp")
    r = paired_compare(base, cand, params)
    assert r["mean_diff"] < 0 and r["n_improved"] == 8 and r["verdict"] == "improved"


def test_unpaired_images_and_nan_pairs():
    base = table([0.5, 0.6, np.nan, 0.7], names=["a", "b", "c", "old"])
    cand = table([0.6, 0.7, 0.8, 0.9], names=["a", "b", "c", "new"])
    r = paired_compare(base, cand, PARAMS)
    assert r["only_baseline"] == ["old"] and r["only_candidate"] == ["new"]
    assert r["n_pairs"] == 2 and r["n_dropped_nan"] == 1
    assert r["candidate_mean"] == pytest.approx(0.65)  # over the pairs only


def test_missing_metric_column():
    with pytest.raises(CompareError, match="no column 'instance_iou'"):
        paired_compare(table(BASE, metric="union_iou"), table(BASE), PARAMS)


def test_markdown_report():
    base = table(BASE + [0.1], names=[f"p{i:02d}" for i in range(10)] + ["gone"])
    md = to_markdown(paired_compare(base, shifted(DIFF), PARAMS))
    assert "improved" in md and "| mean instance_iou |" in md and "Only in baseline (1): gone" in md
    many = table([0.5] * 30, names=[f"x{i}" for i in range(30)])
    md = to_markdown(paired_compare(many, table(BASE), PARAMS))
    assert "… and 10 more" in md and "too few samples" in md


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
