"""Failure patterns: flagged and low-grade cut-outs grouped by HDBSCAN, named by their dominant
reasons, IsolationForest outliers, a t-SNE map and example thumbnails."""
import json
import random

import cv2
import numpy as np
import pytest

from kirinuki.core.config import FailuresParams, Params
from kirinuki.core.imageio import write_jsonl, write_png
from kirinuki.qc.failures import find_patterns, thumbnail, write_failures
from kirinuki.quality.score import MESSAGES

# a clean, whole, single figure: every feature quality/features.py computes
CLEAN = {"confidence": 0.95, "opaque_share": 0.45, "area_share": 0.12, "luma_mean": 0.6, "luma_std": 0.2,
         "saturation": 0.35, "skin_share": 0.15, "hue_entropy": 1.6, "edge_density": 0.12, "secondary_share": 0.02,
         "regions": 1, "open_parts": 1, "heads": 1, "edge_left": 0.0, "edge_top": 0.0, "edge_right": 0.0,
         "edge_bottom": 0.0, "cut_left": 0.3, "cut_top": 0.2, "cut_right": 0.3, "cut_bottom": 0.2,
         "short_side": 400, "resolution": 0.78, "solidity": 0.85, "smoothness": 0.8, "compactness": 0.3,
         "text_share": 0.0, "neighbour_edge": 0.0}
SPREAD = {"confidence": 0.02, "opaque_share": 0.05, "area_share": 0.02, "luma_mean": 0.04, "luma_std": 0.02,
          "saturation": 0.04, "skin_share": 0.03, "hue_entropy": 0.15, "edge_density": 0.02, "secondary_share": 0.01,
          "cut_left": 0.05, "cut_top": 0.05, "cut_right": 0.05, "cut_bottom": 0.05, "short_side": 40,
          "resolution": 0.05, "solidity": 0.03, "smoothness": 0.03, "compactness": 0.03}
GROUPS = {  # planted failures: grade, reasons, how their features differ from a clean figure
    "black": ("E", ["black"], {"luma_mean": 0.03, "luma_std": 0.01, "saturation": 0.02, "skin_share": 0.0,
                               "hue_entropy": 0.0, "edge_density": 0.01}),
    "multi": ("D", ["multi_character"], {"regions": 2, "open_parts": 3, "heads": 2, "secondary_share": 0.7,
                                         "solidity": 0.55}),
    "bottom": ("D", ["truncated_bottom"], {"edge_bottom": 0.6, "cut_bottom": 0.95}),
    "texty": ("D", [], {"text_share": 0.35, "solidity": 0.6}),  # low score, no flag: named by its features
}
SIZES = {"black": 7, "multi": 6, "bottom": 5, "texty": 4}


def record(image: str, k: int, grade: str, reasons: list, features: dict, score: float) -> dict:
    return {"image": image, "k": k, "grade": grade, "score": score, "lora_ok": grade in "AB" and not reasons,
            "reasons": reasons, "messages": reasons, "messages_ja": reasons, "features": features}


def planted(seed: int = 0, clean: int = 30) -> list[dict]:
    rng = np.random.default_rng(seed)

    def jitter(base: dict) -> dict:
        return {n: round(float(v + rng.normal(0, SPREAD[n]) if n in SPREAD else v), 4)
                for n, v in {**CLEAN, **base}.items()}

    rows = [record(f"ok_{i:02d}", 1, "AB"[i % 2], [], jitter({}), 0.9 - 0.005 * i) for i in range(clean)]
    for name, (grade, reasons, diff) in GROUPS.items():
        rows += [record(f"{name}_{i:02d}", 1 + i % 2, grade, list(reasons), jitter(diff), 0.3 + 0.01 * i)
                 for i in range(SIZES[name])]
    return rows


def odd_one(rows: list[dict]) -> list[dict]:
    """One clean A cut-out far from everything else."""
    f = {**CLEAN, "short_side": 3000, "hue_entropy": 2.9, "saturation": 0.95, "area_share": 0.6, "opaque_share": 0.95,
         "luma_mean": 0.95, "skin_share": 0.8, "edge_density": 0.4, "confidence": 0.5, "compactness": 0.9,
         "smoothness": 0.99, "cut_left": 0.01, "cut_right": 0.01, "neighbour_edge": 0.05}
    return rows + [record("zz_odd", 1, "A", [], f, 0.95)]


def by_first_reason(result: dict) -> dict:
    return {p["name"]: p for p in result["patterns"]}


def test_params_have_the_documented_defaults():
    p = Params().failures
    assert (p.grades, p.min_cluster_size, p.contamination, p.examples, p.seed, p.perplexity, p.map_px) \
        == (["D", "E"], 3, "auto", 4, 0, 30.0, 640)
    assert FailuresParams(contamination=0.1).contamination == 0.1
    with pytest.raises(ValueError):
        FailuresParams(contamination=0.9)


def test_planted_groups_are_found_and_named_by_their_reasons():
    rows = planted()
    r = find_patterns(rows, FailuresParams())
    assert r["n"] == len(rows) and r["failing"] == sum(SIZES.values())
    assert "confidence" in r["features"] and len(r["features"]) == len(CLEAN)
    assert [(p["name"], p["size"]) for p in r["patterns"]] == [
        ("black", 7), ("multi_character", 6), ("truncated_bottom", 5), ("high text_share, low solidity", 4)]
    named = by_first_reason(r)
    assert named["black"]["size"] == 7 and named["black"]["grades"] == {"A": 0, "B": 0, "C": 0, "D": 0, "E": 7}
    assert named["black"]["reasons"] == ["black"] and named["black"]["reason_share"] == {"black": 1.0}
    assert named["black"]["name_ja"] == MESSAGES["black"][1]
    assert sorted(named["multi_character"]["members"]) == [f"multi_{i:02d}/{1 + i % 2}" for i in range(6)]
    assert named["truncated_bottom"]["size"] == 5
    # the unflagged low-grade group is named by the two features its members deviate in most
    texty = [p for p in r["patterns"] if p["members"][0].startswith("texty")]
    assert len(texty) == 1 and not texty[0]["reasons"]
    assert set(texty[0]["name"].split(", ")) == {"high text_share", "low solidity"}
    assert texty[0]["features"][0]["name"] in ("text_share", "solidity")
    # ids by size, examples near the medoid, every failing cut-out in a pattern or noise
    assert [p["id"] for p in r["patterns"]] == [f"P{i}" for i in range(1, len(r["patterns"]) + 1)]
    assert [p["size"] for p in r["patterns"]] == sorted((p["size"] for p in r["patterns"]), reverse=True)
    assert all(len(p["examples"]) == min(4, p["size"]) and set(p["examples"]) <= set(p["members"]) for p in r["patterns"])
    assert sum(p["size"] for p in r["patterns"]) + r["noise"] == r["failing"]
    assert not any(m.startswith("ok_") for p in r["patterns"] for m in p["members"])  # clean ones never fail
    assert FailuresParams(examples=2).examples == 2
    assert all(len(p["examples"]) <= 2 for p in find_patterns(rows, FailuresParams(examples=2))["patterns"])


def test_the_result_does_not_depend_on_record_order():
    rows = planted()
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert find_patterns(shuffled, FailuresParams()) == find_patterns(rows, FailuresParams())


def test_grades_param_decides_what_fails():
    rows = planted()
    only_e = find_patterns(rows, FailuresParams(grades=["E"]))
    assert only_e["failing"] == sum(SIZES.values()) - SIZES["texty"]  # the D ones without a flag pass
    assert not any(m.startswith("texty") for p in only_e["patterns"] for m in p["members"])


def test_the_odd_cut_out_is_the_first_outlier():
    rows = odd_one(planted())
    r = find_patterns(rows, FailuresParams())
    assert r["outliers"][0]["member"] == "zz_odd/1" and r["outliers"][0]["grade"] == "A"
    assert r["outliers"][0]["pattern"] is None
    anomaly = [o["anomaly"] for o in r["outliers"]]
    assert anomaly == sorted(anomaly, reverse=True)
    few = find_patterns(rows, FailuresParams(contamination=0.01))
    assert [o["member"] for o in few["outliers"]] == ["zz_odd/1"]


def test_tiny_runs_give_a_valid_result():
    empty = find_patterns([], FailuresParams())
    assert (empty["n"], empty["failing"], empty["patterns"], empty["noise"], empty["outliers"]) == (0, 0, [], 0, [])
    rows = planted(clean=3)[:3] + [r for r in planted() if r["image"].startswith("black")][:2]
    r = find_patterns(rows, FailuresParams())
    assert r["patterns"] == [] and r["failing"] == 2 and r["noise"] == 2 and "min_cluster_size 3" in r["note"]
    json.dumps(r)  # plain JSON
    one = find_patterns(rows[:1], FailuresParams())
    assert one["n"] == 1 and one["outliers"] == []


# --- files ------------------------------------------------------------------------------------

def extract_dir(tmp_path, rows: list[dict]):
    """An extract folder with a char_<k>.png per record and its scores.jsonl."""
    ex = tmp_path / "extract"
    for i, r in enumerate(rows):
        rgba = np.zeros((60 + i % 5 * 10, 40, 4), np.uint8)
        cv2.circle(rgba, (20, 30), 15, (40 * (i % 6), 90, 160, 255), -1)
        write_png(ex / r["image"] / f"char_{r['k']}.png", rgba)
    write_jsonl(ex / "scores.jsonl", rows)
    return ex


def test_write_failures_is_byte_identical_run_to_run(tmp_path):
    rows = odd_one(planted())
    ex = extract_dir(tmp_path, rows)
    a = write_failures(ex, ex / "scores.jsonl", tmp_path / "a", FailuresParams())
    write_failures(ex, ex / "scores.jsonl", tmp_path / "b", FailuresParams())
    for name in ("failures.json", "map.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.png"))
    assert files == sorted(p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*.png"))
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    saved = json.loads((tmp_path / "a" / "failures.json").read_text())
    assert saved == json.loads(json.dumps(a)) and saved["map"]["file"] == "map.png"
    assert saved["map"]["perplexity"] == 30.0
    for p in saved["patterns"]:
        assert len(p["thumbs"]) == len(p["examples"])
        for m, t in zip(p["examples"], p["thumbs"]):
            image, k = m.split("/")
            assert t == f"examples/{p['id']}/{image}_{k}.png"
            thumb = cv2.imread(str(tmp_path / "a" / t), cv2.IMREAD_UNCHANGED)
            assert thumb.ndim == 3 and thumb.shape[2] == 3 and max(thumb.shape[:2]) == 128
    picture = cv2.imread(str(tmp_path / "a" / "map.png"))
    assert picture.shape == (640, 640, 3)
    colours = {tuple(int(c) for c in px) for px in picture.reshape(-1, 3)}
    assert (30, 38, 179) in colours and (59, 127, 27) in colours  # E and A discs (BGR)
    # a rerun with other patterns leaves no stale example behind
    write_failures(ex, ex / "scores.jsonl", tmp_path / "a", FailuresParams(examples=1))
    assert all(len(list(d.iterdir())) == 1 for d in (tmp_path / "a" / "examples").iterdir())


def test_too_few_cut_outs_write_no_map(tmp_path):
    rows = planted()[:4]
    ex = extract_dir(tmp_path, rows)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "map.png").write_bytes(b"stale")
    r = write_failures(ex, ex / "scores.jsonl", tmp_path / "out", FailuresParams())
    assert r["map"]["file"] is None and "at least 5" in r["map"]["reason"]
    assert not (tmp_path / "out" / "map.png").exists()
    assert json.loads((tmp_path / "out" / "failures.json").read_text())["patterns"] == []


def test_missing_cut_out_file_gives_no_thumb(tmp_path):
    rows = planted()
    ex = extract_dir(tmp_path, rows)
    (ex / "black_00" / "char_1.png").unlink()
    r = write_failures(ex, ex / "scores.jsonl", tmp_path / "out", FailuresParams(examples=10))
    black = by_first_reason(r)["black"]
    assert None in black["thumbs"] and len(black["thumbs"]) == 7


def test_thumbnail_sits_on_a_light_checker():
    rgba = np.zeros((300, 150, 4), np.uint8)
    rgba[100:200, 50:100] = (200, 0, 0, 255)
    t = thumbnail(rgba)
    assert t.shape == (128, 64, 3)
    assert {tuple(t[0, 0]), tuple(t[0, 9])} == {(255, 255, 255), (232, 232, 232)}
    assert tuple(t[64, 32]) == (200, 0, 0)


def test_cli_failures_writes_the_patterns_and_says_what_it_found(tmp_path):
    from typer.testing import CliRunner
    from kirinuki.cli import app
    ex = extract_dir(tmp_path, planted())
    r = CliRunner().invoke(app, ["failures", str(ex)])
    assert r.exit_code == 0, r.output
    assert (ex / "failures" / "failures.json").is_file() and (ex / "failures" / "map.png").is_file()
    assert "pattern(s) among" in r.output and "black" in r.output
    r = CliRunner().invoke(app, ["failures", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "no such scores file" in r.output
