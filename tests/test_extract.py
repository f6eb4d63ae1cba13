import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kirinuki.extract.run import Models, extract_page, run_extract
from kirinuki.core.imageio import read_label_png, read_rgba_png
from kirinuki.extract.segment import load_segmenter

from conftest import two_figures


def save(path, rgb):
    Image.fromarray(rgb).save(path)
    return path


def test_extract_page_two_instances(extract_params):
    rgb = two_figures()
    labels, chars, forward = extract_page(rgb, Models(load_segmenter(extract_params)), extract_params)
    assert labels.shape == rgb.shape[:2] and labels.dtype == np.uint8
    assert sorted(np.unique(labels)) == [0, 1, 2]
    # largest first: the 33x61 block beats the r=20 disc
    assert labels[50, 96] == 1 and labels[48, 32] == 2
    assert forward > 0
    for c in chars:
        x0, y0, x1, y1 = c.crop
        assert c.rgba.shape == (y1 - y0, x1 - x0, 4)
        assert (c.rgba[..., 3] > 0).sum() == (labels == c.k).sum()
        assert (c.rgba[c.rgba[..., 3] == 0, :3] == 255).all()  # transparent = white paper
        assert 0.9 < c.confidence <= 1.0 and c.predicted_iou is None and c.detection_score is None
        assert c.crop[0] <= c.box[0] and c.crop[2] >= c.box[2]


def test_run_extract_contract_resume_and_determinism(tmp_path, extract_params):
    src = tmp_path / "in" / "aoki" / "org" / "ep01"
    src.mkdir(parents=True)
    save(src / "p1.png", two_figures())
    save(src / "p2.png", np.full((50, 60, 3), 255, np.uint8))  # nothing on it
    save(src / "p1_gt.png", np.zeros((96, 128), np.uint8))  # GT is never an input
    out = tmp_path / "out"
    s = run_extract(tmp_path / "in", out, extract_params, progress=False)
    assert (s.pages, s.characters, s.skipped, s.errors) == (2, 2, 0, [])
    assert sorted(p.name for p in (out / "p1").iterdir()) == ["char_1.png", "char_2.png", "labels.png", "page.json"]
    assert read_label_png(out / "p2" / "labels.png").max() == 0
    recs = [json.loads(l) for l in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["image"], r["k"]) for r in recs] == [("p1", 1), ("p1", 2)]
    for key in ("bbox", "segmenter", "model_sha256", "onnxruntime", "confidence", "seconds", "params_hash",
                "forward_seconds", "predicted_iou", "detection_score", "detector"):
        assert key in recs[0]
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.png")}

    s2 = run_extract(tmp_path / "in", out, extract_params, progress=False)
    assert s2.skipped == 2 and s2.seconds == []
    assert len((out / "records.jsonl").read_text().splitlines()) == 2

    again = tmp_path / "again"
    run_extract(tmp_path / "in", again, extract_params, progress=False)
    assert {p.relative_to(again): p.read_bytes() for p in again.rglob("*.png")} == first

    # other params -> not reused; a page with fewer characters loses its stale cut-outs
    save(src / "p1.png", np.asarray(Image.open(src / "p2.png").resize((128, 96))))
    s3 = run_extract(tmp_path / "in", out, extract_params.model_copy(update={"margin": 0.1}), progress=False)
    assert s3.skipped == 0 and not list((out / "p1").glob("char_*.png"))


def test_max_files(tmp_path, extract_params):
    for i in range(3):
        save(tmp_path / f"p{i}.png", two_figures())
    s = run_extract(tmp_path, tmp_path / "out", extract_params, max_files=2, progress=False)
    assert s.pages == 2 and not (tmp_path / "out" / "p2").exists()


def _bad_and_odd_inputs(d):
    """Files a real folder of pages holds: each must process or fail with its own line."""
    rgb = two_figures()
    save(d / "ok.png", rgb)
    (d / "zero.png").write_bytes(b"")
    (d / "notes.jpg").write_text("this is not an image")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    (d / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(d / "gray16.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16).save(d / "palette.png")
    Image.fromarray(rgb).convert("LA").save(d / "gray_alpha.png")
    # stored sideways with EXIF orientation 6 (rotate 90 CW on display)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1))).save(d / "exif_rotated.jpg", exif=exif, quality=95)
    Image.fromarray(np.full((400, 400, 3), 255, np.uint8)).save(d / "huge.png")


def test_bad_inputs_reported_batch_continues(tmp_path, extract_params):
    d = tmp_path / "in"
    d.mkdir()
    _bad_and_odd_inputs(d)
    out = tmp_path / "out"
    params = extract_params.model_copy(update={"max_pixels": 100_000})  # huge.png: 160,000 px
    s = run_extract(d, out, params, progress=False)
    failed = {e.split(":")[0].rsplit("/", 1)[-1]: e for e in s.errors}
    assert set(failed) == {"zero.png", "notes.jpg", "truncated.png", "huge.png"}
    assert all("\n" not in e for e in s.errors)
    assert "0 bytes" in failed["zero.png"] and "max_pixels" in failed["huge.png"]
    for stem in ("ok", "cmyk", "gray16", "palette", "gray_alpha", "exif_rotated"):
        labels = read_label_png(out / stem / "labels.png")
        assert labels.shape == (96, 128), stem  # EXIF-rotated page comes out upright
        assert labels.max() >= 1, stem
    assert not any(p.name.startswith(".") for p in out.rglob("*"))  # no temporary leftovers
    assert not (out / "zero").exists()
    run = json.loads((out / "run.json").read_text())
    assert len(run["errors"]) == 4


def test_duplicate_stems_are_reported(tmp_path, extract_params):
    for work in ("ep01", "ep02"):
        (tmp_path / work).mkdir()
        save(tmp_path / work / "p.png", two_figures())
    s = run_extract(tmp_path, tmp_path / "out", extract_params, progress=False)
    assert s.pages == 1 and len(s.errors) == 1 and "duplicate" in s.errors[0]


def test_missing_model_is_a_clear_error(tmp_path, extract_params):
    with pytest.raises(FileNotFoundError, match="extract.model"):
        load_segmenter(extract_params.model_copy(update={"model": tmp_path / "none.onnx"}))


def test_cutout_roundtrip(tmp_path, extract_params):
    save(tmp_path / "p.png", two_figures())
    run_extract(tmp_path / "p.png", tmp_path / "out", extract_params, progress=False)
    rgba = read_rgba_png(tmp_path / "out" / "p" / "char_2.png")
    assert tuple(rgba[rgba.shape[0] // 2, rgba.shape[1] // 2]) == (30, 40, 60, 255)


def test_resume_does_not_depend_on_how_the_model_path_is_spelled(tmp_path, extract_params):
    save(tmp_path / "p.png", two_figures())
    run_extract(tmp_path / "p.png", tmp_path / "out", extract_params, progress=False)
    other = Path(os.path.relpath(extract_params.model))  # same file, relative spelling
    s = run_extract(tmp_path / "p.png", tmp_path / "out", extract_params.model_copy(update={"model": other}),
                    progress=False)
    assert s.skipped == 1


def test_descreen_blurs_monochrome_pages_only():
    from kirinuki.extract.segment import isnet_input, is_monochrome
    rng = np.random.default_rng(0)
    dots = (rng.random((64, 48)) > 0.5).astype(np.uint8) * 255  # screentone-like binary noise
    grey = np.repeat(dots[..., None], 3, axis=2)
    colour = grey.copy()
    colour[..., 0] //= 2  # same dots, tinted: not monochrome
    assert is_monochrome(grey, 2.0) and not is_monochrome(colour, 2.0)
    prep = dict(size=64, mean=(0.5,) * 3, std=(1.0,) * 3, letterbox=False, mono_chroma=2.0)
    sharp, _ = isnet_input(grey, descreen_sigma=0.0, **prep)
    soft, _ = isnet_input(grey, descreen_sigma=1.5, **prep)
    assert soft.shape == (1, 3, 64, 64) and soft.dtype == np.float32
    assert soft.std() < 0.5 * sharp.std()  # dots averaged towards grey
    tinted, _ = isnet_input(colour, descreen_sigma=1.5, **prep)
    untouched, _ = isnet_input(colour, descreen_sigma=0.0, **prep)
    assert np.array_equal(tinted, untouched)
