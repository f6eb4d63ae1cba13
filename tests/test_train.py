"""Training the splitter (kirinuki train-splitter): composites and their targets, the
augmentations, and the command end to end on tiny synthetic sprites."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from kirinuki.cli import app
from kirinuki.extract.split import Splitter
from kirinuki.train.data import chibi, composite, load_backgrounds, load_sprites, sketch, targets, training_set


def _figure(colour):
    """A 120x60 RGBA figure: a 29 px wide head over a body of the reversed colour."""
    a = np.zeros((120, 60, 4), np.uint8)
    cv2.ellipse(a, (30, 20), (14, 16), 0, 0, 360, (*colour, 255), -1)  # head
    cv2.rectangle(a, (12, 36), (48, 118), (*colour[::-1], 255), -1)  # body
    return a


def _sprites_and_backgrounds(root):
    """Three RGBA figures of different colours and one background picture, as files."""
    (root / "sprites").mkdir()
    (root / "bg").mkdir()
    for i, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        cv2.imwrite(str(root / "sprites" / f"s{i}.png"), _figure(colour))
    (root / "sprites" / "broken.png").write_bytes(b"not a png")
    bg = np.random.default_rng(0).integers(0, 255, (90, 160, 3), np.uint8)
    cv2.imwrite(str(root / "bg" / "bg.jpg"), bg)


def test_composites_are_exact_and_seeded(tmp_path):
    _sprites_and_backgrounds(tmp_path)
    logs = []
    sprites, bgs = load_sprites([tmp_path / "sprites"], logs.append), load_backgrounds([tmp_path / "bg"], logs.append)
    assert len(sprites) == 3 and len(bgs) == 1
    assert len(logs) == 1 and logs[0].startswith(f"{tmp_path / 'sprites' / 'broken.png'}: skipped")
    page, labels = composite(sprites, bgs, np.random.default_rng(3), side=160)
    assert page.shape[:2] == labels.shape and page.dtype == labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(labels.max() + 1))  # 0..n, no gaps
    a, b = training_set(sprites, bgs, 4, seed=1, manga_share=0.5), training_set(sprites, bgs, 4, seed=1, manga_share=0.5)
    assert all((x == y).all() for x, y in zip(a, b))
    drawn = training_set(sprites, bgs, 4, seed=1, manga_share=0.5, drawn_share=1.0)
    assert all((x == y).all() for x, y in zip(drawn, training_set(sprites, bgs, 4, seed=1, manga_share=0.5,
                                                                   drawn_share=1.0)))
    assert not (drawn[0] == a[0]).all()  # drawn figures, not the sprites
    heat, off, fg = targets(np.pad(np.ones((64, 64), np.uint8), ((0, 192), (0, 192))))
    assert heat.shape == fg.shape == (128, 128) and off.shape == (2, 128, 128)
    assert heat.max() > 0.9 and fg.sum() == 32 * 32  # a 32x32 character, centre of mass (15.5, 15.5)
    assert off[:, 0, 0] == pytest.approx([15.5 / 128, 15.5 / 128]) and (off[:, fg == 0] == 0).all()
    tall = np.zeros((256, 256), np.uint8)
    tall[:200, :40] = 1  # 100 x 20 grid cells: the head is the top fifth, rows 0..20
    heat, off, fg = targets(tall, "head")
    assert np.unravel_index(heat.argmax(), heat.shape) in {(10, 9), (10, 10)}
    assert off[:, 99, 0] == pytest.approx([(10 - 99) / 128, 9.5 / 128]) and fg.sum() == 100 * 20


@pytest.mark.slow
def test_train_splitter_command_writes_a_working_model(tmp_path):
    pytest.importorskip("torch")
    _sprites_and_backgrounds(tmp_path)
    out = tmp_path / "splitter.onnx"
    r = CliRunner().invoke(app, ["train-splitter", "--sprites", str(tmp_path / "sprites"), "--backgrounds",
                                 str(tmp_path / "bg"), "-o", str(out), "--steps", "2", "--samples", "4",
                                 "--threads", "1", "--centre", "head"])
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sprites"] == 3 and card["steps"] == 2 and card["centre"] == "head" and len(card["sha256"]) == 64
    splitter = Splitter(out, threads=1, name="splitter")
    rgb = np.random.default_rng(0).integers(0, 255, (100, 70, 3), np.uint8)
    heat, off, fg = splitter(rgb)
    assert heat.shape == fg.shape == (128, 128) and off.shape == (2, 128, 128)
    assert heat.dtype == off.dtype == fg.dtype == np.float32
    assert ((heat >= 0) & (heat <= 1)).all() and ((fg >= 0) & (fg <= 1)).all()
    assert all((a == b).all() for a, b in zip((heat, off, fg), splitter(rgb)))


def test_train_splitter_without_sprites_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["train-splitter", "--sprites", str(tmp_path / "empty"),
                                 "--backgrounds", str(tmp_path / "empty"), "-o", str(tmp_path / "s.onnx")])
    assert r.exit_code == 2  # a usage error: nothing to train on
    assert "0 sprites and 0 backgrounds found" in r.output
    r = CliRunner().invoke(app, ["train-splitter", "--sprites", str(tmp_path / "empty"), "--backgrounds",
                                 str(tmp_path / "empty"), "-o", str(tmp_path / "s.onnx"), "--centre", "feet"])
    assert r.exit_code == 2 and "centre 'feet' is not one of mass, head" in r.output


def test_augmentations_change_the_look_not_the_character():
    rng = np.random.default_rng(0)
    sprite = _figure((200, 40, 40))
    sd = chibi(sprite, rng)
    assert sd.dtype == np.uint8 and sd.shape[2] == 4 and sd.shape[0] < 120  # shorter ...
    assert (sd[:sd.shape[0] // 3, :, 3] > 0).any(axis=0).sum() > 32  # ... with a head wider than its 29 px
    rough = sketch(sprite[..., :3], rng)
    assert rough.shape == (120, 60, 3) and rough.dtype == np.uint8
    assert np.median(rough) > 190  # a pale fill with lines, whatever the colours were


def test_evaluation_composites_show_the_sprites_as_drawn(tmp_path):
    """augment=False: no recolouring, roughs or chibi; the training pages (augment on) do recolour."""
    _sprites_and_backgrounds(tmp_path)
    sprites, bgs = load_sprites([tmp_path / "sprites"], print), load_backgrounds([tmp_path / "bg"], print)
    palette = {(200, 40, 40), (40, 200, 40), (40, 40, 200)}

    def off_palette(augment):
        rng, share = np.random.default_rng(0), []
        for _ in range(20):
            page, labels = composite(sprites, bgs, rng, side=320, manga_share=0.0, augment=augment)
            inner = cv2.erode((labels > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            px = [tuple(int(v) for v in c) for c in page[inner]]
            share.append(sum(c not in palette for c in px) / max(1, len(px)))
        return max(share)
    assert off_palette(False) < 0.15  # only the head/body seam blends
    assert off_palette(True) > 0.5


def test_composites_command_writes_seeded_evaluation_pages_with_ground_truth(tmp_path):
    """`kirinuki composites`: pages and label PNGs in the layout `validate --gt` reads, named after
    the folder (folds pool), byte-identical for one seed, each page's sprites in scenes.csv (the
    format `calibrate --sources` reads) and every file used named with its sha256."""
    _sprites_and_backgrounds(tmp_path)
    args = ["--sprites", str(tmp_path / "sprites"), "--backgrounds", str(tmp_path / "bg"), "--pages", "3"]
    runner = CliRunner()
    for out in ("a", "b"):
        r = runner.invoke(app, ["composites", str(tmp_path / out), *args, "--seed", "2"])
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "a" / "images").iterdir()) == ["a_0000.png", "a_0001.png", "a_0002.png"]
    for i in range(3):
        for sub, suffix in (("images", ".png"), ("gt", "_gt.png")):
            a, b = (tmp_path / x / sub / f"{x}_{i:04d}{suffix}" for x in ("a", "b"))
            assert a.read_bytes() == b.read_bytes()
    card = json.loads((tmp_path / "a" / "composites.json").read_text())
    assert card["pages"] == 3 and card["seed"] == 2 and len(card["sprites"]) == 4 and len(card["backgrounds"]) == 1
    scenes = list(csv.DictReader((tmp_path / "a" / "scenes.csv").open()))
    assert [r["id"] for r in scenes] == ["a_0000", "a_0001", "a_0002"]
    for r in scenes:
        gt = cv2.imread(str(tmp_path / "a" / "gt" / f"{r['id']}_gt.png"), cv2.IMREAD_UNCHANGED)
        assert int(r["n_chars"]) == gt.max() == len([s for s in r["sprites"].split(";") if s])
        assert {s for s in r["sprites"].split(";") if s} <= {"sprites/s0.png", "sprites/s1.png", "sprites/s2.png"}
        assert r["style"] in ("colour", "manga") and max(gt.shape) == 1024
    r = runner.invoke(app, ["composites", str(tmp_path / "c"), "--sprites", str(tmp_path / "nope"),
                            "--backgrounds", str(tmp_path / "bg")])
    assert r.exit_code == 2 and f"{tmp_path / 'nope'}: no such folder" in r.output
