"""`kirinuki export`: selection by review and grade, near-duplicates, buckets, the three trainer
layouts, the manifest and `--check`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kirinuki.cli import app
from kirinuki.core.cards import sha256_file
from kirinuki.core.config import ExportParams, TaggerParams
from kirinuki.core.imageio import write_json, write_jsonl, write_png
from kirinuki.dataset.export import INDEX, MANIFEST, buckets, check, find_source, fit_bucket, kohya_folder, run_export
from kirinuki.dataset.reviews import append_review
from kirinuki.dataset.usage import record_usage, times_seen


def kohya_parse(folder_name: str) -> tuple[int, str]:
    """kohya-ss sd-scripts' rule for a DreamBooth image folder (config_util.py,
    extract_dreambooth_params): repeats before the first '_', the caption after it."""
    tokens = folder_name.split("_")
    try:
        n_repeats = int(tokens[0])
    except ValueError:
        return 0, ""
    return n_repeats, "_".join(tokens[1:])


def figure(seed: int, h: int = 300, w: int = 160) -> np.ndarray:
    """An RGBA cut-out: a random-coloured body on transparency (each seed a different picture)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 4), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    body = ((xx - w / 2) / (w / 2.2)) ** 2 + ((yy - h * 0.6) / (h * 0.42)) ** 2 <= 1
    head = (xx - w / 2) ** 2 + (yy - h * 0.16) ** 2 <= (w * 0.3) ** 2
    pattern = (rng.integers(0, 255, (h // 20 + 1, w // 20 + 1, 3))).repeat(20, 0).repeat(20, 1)[:h, :w]
    img[..., :3] = pattern
    img[..., 3] = np.where(body | head, 255, 0)
    return img


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A tracker workspace with 5 cut-outs on 4 pages: a lora_ok one, its near-duplicate on the next
    page, one not lora_ok, one lora_ok that a reviewer excludes, one not lora_ok that is approved."""
    ws = tmp_path / "root" / "me" / "tracker-workspace" / "QCC-001"
    pages = tmp_path / "root" / "me" / "org" / "ep1"
    pages.mkdir(parents=True)
    rows = []
    spec = [("p1", 1, 1, True, "B", 0.8), ("p2", 1, 1, True, "B", 0.7),  # p2/1: the same figure again
            ("p3", 1, 2, False, "D", 0.3), ("p3", 2, 3, True, "A", 0.9), ("p4", 1, 4, False, "E", 0.1)]
    for image, k, seed, ok, grade, score in spec:
        picture = figure(seed)
        if image == "p2":  # the panel repeated on the next page: nearly, not exactly, the same pixels
            picture[150:153, 70:73, :3] = 0
        write_png(ws / "extract" / image / f"char_{k}.png", picture)
        (pages / f"{image}.png").write_bytes(b"")  # the page itself is not read, only its captions
        write_json(ws / "extract" / image / "page.json", {"image": image, "source": str(pages / f"{image}.png"),
                                                          "monochrome": image == "p4"})
        rows.append({"image": image, "k": k, "lora_ok": ok, "grade": grade, "score": score,
                     "features": {"heads": 1}, "reasons": []})
    write_jsonl(ws / "extract" / "scores.jsonl", rows)
    (pages / "p1.txt").write_text("blue hair, school uniform\n", encoding="utf-8")
    for (image, k), verdict in {("p3", 2): "exclude", ("p4", 1): "approve"}.items():
        sha = sha256_file(ws / "extract" / image / f"char_{k}.png")
        append_review(ws / "reviews.jsonl", who="tester", cutout=f"{image}/{k}", sha256=sha, verdict=verdict,
                      at="2026-12-06T00:00:00+00:00")
    return ws


def export(ws: Path, out: Path, **kw) -> dict:
    return run_export([find_source(ws)], out, ExportParams(**kw), 512, log=lambda m: None)


def test_export_selects_by_review_and_grade_and_writes_three_layouts(workspace, tmp_path):
    out = tmp_path / "ds"
    summary = export(workspace, out, trigger="mychar", class_word="girl", repeats=7)
    m = json.loads((out / MANIFEST).read_text())
    names = sorted(it["cutout"] for it in m["items"])
    # p1/1 kept (lora_ok); p2/1 its duplicate; p3/1 not lora_ok; p3/2 excluded; p4/1 approved
    assert names == ["p1/1", "p4/1"]
    assert summary["left_out"] == {"excluded": 1, "not_selected": 1, "duplicates": 1, "missing": 0}
    folder = kohya_folder(7, "mychar", "girl")
    assert kohya_parse(folder) == (7, "mychar girl")
    for it in m["items"]:
        for base in (out / "kohya" / folder, out / "ai-toolkit", out / "hf" / "train"):
            assert (base / f"{it['name']}.png").is_file()
        caption = (out / "kohya" / folder / f"{it['name']}.txt").read_text()
        assert caption == (out / "ai-toolkit" / f"{it['name']}.txt").read_text()
        assert caption.startswith("mychar, ") and caption.endswith("\n")
    by_cutout = {it["cutout"]: it for it in m["items"]}
    assert "blue hair" in by_cutout["p1/1"]["tags"] and "school uniform" in by_cutout["p1/1"]["tags"]
    assert "monochrome" in by_cutout["p4/1"]["tags"] and by_cutout["p4/1"]["review"] == "approve"
    meta = [json.loads(line) for line in (out / "hf" / "train" / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["file_name"] for r in meta) == sorted(f"{it['name']}.png" for it in m["items"])
    assert 'num_repeats = 7' in (out / "kohya" / "dataset.toml").read_text()
    assert "folder_path: ai-toolkit" in (out / "ai-toolkit" / "dataset.yaml").read_text()
    assert check(out) == []
    assert (out.stat().st_mode & 0o777) == (out.parent.stat().st_mode & 0o777)  # not mkdtemp's private 0700


def test_select_approved_takes_reviewed_cutouts_only(workspace, tmp_path):
    export(workspace, tmp_path / "ds", select="approved", layouts=["hf"])
    m = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    assert [it["cutout"] for it in m["items"]] == ["p4/1"]
    assert not (tmp_path / "ds" / "kohya").exists() and check(tmp_path / "ds") == []


def test_dedupe_off_keeps_the_repeated_panel(workspace, tmp_path):
    summary = export(workspace, tmp_path / "ds", dedupe_distance=-1)
    assert summary["items"] == 3 and summary["left_out"]["duplicates"] == 0


def test_check_names_every_tampered_file(workspace, tmp_path):
    out = tmp_path / "ds"
    export(workspace, out)
    m = json.loads((out / MANIFEST).read_text())
    name = m["items"][0]["name"]
    caption = out / "ai-toolkit" / f"{name}.txt"
    caption.write_text("mychar, something else\n")
    (out / "hf" / "train" / f"{name}.png").unlink()
    (out / "ai-toolkit" / "stray.png").write_bytes(b"x")
    problems = check(out)
    assert any(str(caption) in p and "altered" in p for p in problems)
    assert any(f"{name}.png" in p and "missing" in p for p in problems)
    assert any("stray.png" in p and "not in the manifest" in p for p in problems)
    assert any("stray.txt" not in p and "stray.png" in p for p in problems)


def test_buckets_and_fit():
    bs = buckets(512, 64)
    assert (512, 512) in bs and all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in bs)
    img = figure(0, 300, 160)
    out, up = fit_bucket(img, 512, 64, "transparent")
    assert out.shape[2] == 4 and (out.shape[1], out.shape[0]) in bs and up  # 300 px tall -> enlarged
    assert out[0, 0, 3] == 0  # the padding stays transparent
    flat, _ = fit_bucket(img, 512, 64, "#ff0000")
    assert flat.shape[2] == 3 and tuple(flat[0, 0]) == (255, 0, 0)
    tall = fit_bucket(figure(1, 2000, 400), 512, 64, "#ffffff")[0]
    assert tall.shape[0] > tall.shape[1] and tall.shape[0] * tall.shape[1] <= 512 * 512


def test_export_is_deterministic_and_keeps_usage_history(workspace, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    export(workspace, a)
    export(workspace, b)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != INDEX)
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != INDEX)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    name = json.loads((a / MANIFEST).read_text())["items"][0]["name"]
    log = tmp_path / "seen.txt"
    log.write_text(f"{name}.png\n{name}.png\n")
    record_usage(a / INDEX, "run1", log)
    export(workspace, a, repeats=3)  # a re-export keeps what training saw
    assert sorted(times_seen(a / INDEX).values()) == [0, 2]
    assert not list(tmp_path.glob(".a.*"))  # no half-written set left behind


def test_export_refuses_to_replace_a_folder_that_is_not_a_dataset(workspace, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(Exception, match="not a folder kirinuki wrote"):
        export(workspace, out)
    assert (out / "precious.txt").read_text() == "keep me"


def test_cli_export_check_and_tamper(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(workspace), "-o", "ds"])
    assert r.exit_code == 0, r.output
    assert "2 image(s)" in r.output
    r = runner.invoke(app, ["export", "--check", "ds"])
    assert r.exit_code == 0 and "whole" in r.output
    txt = next((tmp_path / "ds" / "ai-toolkit").glob("*.txt"))
    txt.write_text("tampered\n")
    r = runner.invoke(app, ["export", "--check", "ds"])
    assert r.exit_code == 1 and txt.name in r.output
    r = runner.invoke(app, ["export", str(tmp_path / "nowhere"), "-o", "ds2"])
    assert r.exit_code == 2 and "no scores.jsonl" in r.output
    r = runner.invoke(app, ["export", "--check", "nowhere"])
    assert r.exit_code == 2 and "nowhere: no such folder" in r.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")  # not a dataset: refused before any work
    r = runner.invoke(app, ["export", str(workspace), "-o", "mine"])
    assert r.exit_code == 2 and "not a folder kirinuki wrote" in r.output and (tmp_path / "mine" / "notes.txt").exists()
    (tmp_path / "strict.yaml").write_text("export:\n  select: approved\n")  # no reviews beside a bare extract folder
    r = runner.invoke(app, ["export", str(workspace / "extract"), "-o", "empty", "-p", "strict.yaml"])
    assert r.exit_code == 1 and "the dataset is empty" in r.output, r.output


def test_export_with_the_tagger(workspace, tmp_path):
    from test_dataset_tagger import make_tiny_tagger
    model, csv = make_tiny_tagger(tmp_path / "tagger", [("general", 9), ("1girl", 0), ("long_hair", 0),
                                                         ("some_character", 4)])
    from kirinuki.dataset.tagger import Tagger
    tp = TaggerParams(model=model, tags_csv=csv, general_threshold=0.01, character_threshold=0.01)
    params = ExportParams(tagger=tp)
    run_export([find_source(workspace)], tmp_path / "ds", params, 512, log=lambda m: None, tagger=Tagger(tp))
    m = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    assert all("long hair" in it["tags"] and "1girl" in it["tags"] for it in m["items"])
    assert all(it["character"] == "some_character" for it in m["items"])  # what --balance character uses
    assert check(tmp_path / "ds") == []


def test_cli_usage_then_sample_puts_never_seen_images_first(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["export", str(workspace), "-o", "ds", "-p", str(params_file(tmp_path))]).exit_code == 0
    names = sorted(it["name"] for it in json.loads((tmp_path / "ds" / MANIFEST).read_text())["items"])
    assert len(names) == 3
    (tmp_path / "run1.log").write_text(f"step 1: loading ds/kohya/10_x y/{names[0]}.png\nloss 0.1\n")
    (tmp_path / "run2.log").write_text(f"{names[0]}.png\n{names[1]}.png\n")
    r = runner.invoke(app, ["dataset", "usage", "ds", "--run", "v1", "--log", "run1.log"])
    assert r.exit_code == 0 and "1 sighting(s)" in r.output
    r = runner.invoke(app, ["dataset", "usage", "ds", "--run", "v1b", "--parent", "v1", "--log", "run2.log"])
    assert r.exit_code == 0 and "resumed from v1" in r.output
    assert runner.invoke(app, ["dataset", "usage", "ds", "--run", "v1", "--log", "run2.log"]).exit_code == 2
    for seed in (0, 1):
        r = runner.invoke(app, ["dataset", "sample", "ds", "--seed", str(seed), "-o", f"next{seed}.txt", "--kohya", "k"])
        assert r.exit_code == 0, r.output
        order = [Path(line).stem for line in (tmp_path / f"next{seed}.txt").read_text().splitlines()]
        assert order == [names[2], names[1], names[0]]  # never seen, once, twice
    assert sorted(kohya_parse(d.name)[0] for d in (tmp_path / "k").iterdir() if d.is_dir()) == [3, 5, 10]  # 10 x 1/(1+seen)
    stale = tmp_path / "k" / "7_x y" / "gone.png"  # a folder of an earlier sample: replaced whole
    stale.parent.mkdir()
    stale.write_bytes(b"x")
    assert runner.invoke(app, ["dataset", "sample", "ds", "-o", "next.txt", "--kohya", "k"]).exit_code == 0
    assert not stale.parent.exists() and len(list((tmp_path / "k").glob("*/*.png"))) == 3
    next((tmp_path / "k").glob("*/*.txt")).write_text("my own caption\n")  # edited there: the dataset stays whole
    assert runner.invoke(app, ["export", "--check", "ds"]).exit_code == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")  # none of ours: refused, kept
    r = runner.invoke(app, ["dataset", "sample", "ds", "-o", "next.txt", "--kohya", "mine"])
    assert r.exit_code == 2 and "not a folder kirinuki wrote" in r.output and (tmp_path / "mine" / "notes.txt").exists()
    r = runner.invoke(app, ["dataset", "stats", "ds"])
    assert r.exit_code == 0 and "1 never seen" in r.output and "v1b (after v1)" in r.output
    r = runner.invoke(app, ["dataset", "usage", "ds", "--run", "v1c", "--parent", "v1b", "--log", "run2.log"])
    assert r.exit_code == 0 and "already recorded as run 'v1b' (counted twice now)" in r.output, r.output


def params_file(tmp_path: Path) -> Path:
    """params that keep the near-duplicate, so three images are exported."""
    p = tmp_path / "params.yaml"
    p.write_text("export:\n  dedupe_distance: -1\n")
    return p


def test_reviews_go_on_after_an_append_cut_short(tmp_path):
    from kirinuki.dataset.reviews import latest, read_reviews
    path = tmp_path / "reviews.jsonl"
    append_review(path, who="a", cutout="p/1", sha256="a" * 64, verdict="approve")
    with open(path, "ab") as f:
        f.write(b'{"at": "2026-12-0')  # killed mid-write
    assert len(read_reviews(path)) == 1  # the cut line is ignored
    append_review(path, who="a", cutout="p/1", sha256="a" * 64, verdict="exclude")
    assert [r["verdict"] for r in read_reviews(path)] == ["approve", "exclude"]
    assert latest(read_reviews(path))["a" * 64].decision == "exclude"


def test_the_workspace_dashboard_shows_training_usage(workspace, tmp_path):
    from kirinuki.dataset.usage import training_usage
    from kirinuki.dataset.reviews import cutout_shas
    from kirinuki.publish.dashboard import build_cards, render_dashboard, with_reviews
    out = tmp_path / "ds"
    export(workspace, out)
    assert (workspace / "datasets.txt").read_text() == f"{out.absolute()}\n"
    export(workspace, out)  # listed once
    assert (workspace / "datasets.txt").read_text().count("\n") == 1
    name = json.loads((out / MANIFEST).read_text())["items"][0]["name"]
    (tmp_path / "log").write_text(f"{name}.png\n" * 3)
    record_usage(out / INDEX, "v1", tmp_path / "log")
    scores = [json.loads(line) for line in (workspace / "extract" / "scores.jsonl").read_text().splitlines()]
    cards = build_cards(scores, {})
    cards = with_reviews(cards, cutout_shas(workspace / "extract", [(c.image, c.k) for c in cards]), {},
                         training_usage(workspace / "datasets.txt"))
    page = render_dashboard({"tracker_id": "QCC-001", "status": "done"}, cards, None, None)
    assert '<div class="seen muted">seen 3× in training</div>' in page
    assert page.count('<div class="seen muted">never seen in training</div>') == 1
    assert '<span data-usage="exported">2</span>, never seen <span data-usage="never_seen">1</span>' in page


def test_cli_refuses_bad_dictionary_and_missing_tagger_before_any_work(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for body, says in [("export:\n  tags: nowhere.yaml\n", "no such tag dictionary"),
                       ("export:\n  tagger:\n    model: t.onnx\n    tags_csv: t.csv\n", "never downloads them")]:
        (tmp_path / "p.yaml").write_text(body)
        r = CliRunner().invoke(app, ["export", str(workspace), "-o", "ds", "-p", "p.yaml"])
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output
        assert not (tmp_path / "ds").exists()


def test_a_broken_cut_out_or_caption_file_is_named_and_the_export_goes_on(workspace, tmp_path):
    (workspace / "extract" / "p3" / "char_2.png").write_bytes(b"not a png")  # lora_ok (its review lapses)
    page = Path(json.loads((workspace / "extract" / "p1" / "page.json").read_text())["source"])
    page.with_suffix(".txt").write_bytes(b"\xff\xfe broken \x80")
    logged = []
    summary = run_export([find_source(workspace)], tmp_path / "ds", ExportParams(), 512, log=logged.append)
    assert summary["items"] == 2 and summary["left_out"]["missing"] == 1  # p1/1 and p4/1 still exported
    assert any("char_2.png" in m and "left out" in m for m in logged)
    assert any("p1.txt" in m for m in logged)
    assert check(tmp_path / "ds") == []


def test_generated_tags_say_where_the_page_edge_cuts_the_figure():
    from kirinuki.dataset.export import generated_tags
    row = {"features": {"heads": 1}, "reasons": [], "layers": {"l2_content": {"frame_sides": ["bottom", "left"]}}}
    assert generated_tags(row, {"monochrome": True}) == ["feet_out_of_frame", "solo", "monochrome", "greyscale"]
    assert generated_tags({"features": {"heads": 2}, "reasons": ["multi_character"]}, {}) == []
    standing = {**row, "framing": "full_body"}  # a sure full_body stands on the edge: its feet are drawn
    assert generated_tags(standing, {}) == ["full_body", "solo"]
    assert generated_tags({**row, "framing": "upper_body"}, {}) == ["upper_body", "feet_out_of_frame", "solo"]
