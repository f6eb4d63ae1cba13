"""Reviews in a real headless Chromium: behind `kirinuki serve` the dashboard gets approve /
exclude / wrong-grade buttons that append to reviews.jsonl and update the counts; opened from
disk the same page stays read-only."""
import base64
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from kirinuki.core.imageio import write_png
from kirinuki.publish.serve import PASSWORD_ENV, USER_ENV, make_server
from kirinuki.publish.track import TrackOptions, run_track
from kirinuki.publish.workspace import workspace_for_input

import localhttp
from cdp import Browser, chromium_path
from works import tracker_params

pytestmark = [pytest.mark.slow, pytest.mark.skipif(chromium_path() is None,
                                                   reason="Debian's chromium is not installed (.ci/run installs it)")]

AUTH = {"Authorization": "Basic " + base64.b64encode(b"kana:correct horse battery").decode()}
READY = "document.body.dataset.review"  # 'on' with the review API, 'off' without


def tracked_distinct(root, tiny_model, n_pages: int = 3):
    """A tracker run over pages whose figures differ in size from page to page, so that no two
    cut-outs are the same file (works.make_work shifts one page: its cut-outs repeat)."""
    work = root / "aoki" / "org" / "ep1"
    work.mkdir(parents=True)
    for i in range(n_pages):
        rgb = np.full((96, 128, 3), 255, np.uint8)
        cv2.circle(rgb, (32, 48), 14 + 3 * i, (30, 40, 60), -1)
        cv2.rectangle(rgb, (80, 20), (100 + 4 * i, 80 - 5 * i), (60, 20, 20), -1)
        Image.fromarray(rgb).save(work / f"aoki_ep1_{i:02d}.png")
        write_png(work / f"aoki_ep1_{i:02d}_gt.png", (rgb.min(axis=2) < 128).astype(np.uint8) * 255)
    ws = workspace_for_input(work, "QCC-011")
    lines: list[str] = []
    assert run_track(ws, work, tracker_params(tiny_model), TrackOptions(notify=False), lines.append, env={}) == 0, lines
    return ws


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("review-browser") / "root"
    ws = tracked_distinct(root, tiny_model)
    server = localhttp.start(make_server(root, "127.0.0.1", 0, env={USER_ENV: "kana", PASSWORD_ENV: "correct horse battery"}))
    browser = Browser()
    yield browser, f"http://127.0.0.1:{server.server_port}", ws
    browser.close()
    localhttp.stop(server)


def card(cutout: str) -> str:
    return f"document.querySelector('.card[data-cutout=\"{cutout}\"]')"


def badges(b: Browser, cutout: str) -> list[str]:
    return b.js(f"[...{card(cutout)}.querySelectorAll('.rv .rv-badge')].map(e => e.textContent)")


def counts(b: Browser) -> dict[str, str]:
    return b.js("Object.fromEntries([...document.querySelectorAll('[data-rv]')].map(e => [e.dataset.rv, e.textContent]))")


def test_review_in_chromium(served, tmp_path):
    b, base, ws = served
    b.set_headers(AUTH)
    assert b.goto(f"{base}/tracker/QCC-011/") == 200
    assert b.wait(READY) == "on"
    assert b.js("document.getElementById('review-mode').textContent") == "Reviewing as kana."
    n_cards = b.js("document.querySelectorAll('.card').length")
    assert b.js("document.querySelectorAll('.card .rv-do').length") == 3 * n_cards
    assert counts(b)["reviewed"] == "0"

    # three cut-outs with different files (identical ones share a review)
    picks = b.js("(() => { const seen = new Set(); return [...document.querySelectorAll('.card')]"
                 ".filter(c => !seen.has(c.dataset.sha256) && seen.add(c.dataset.sha256))"
                 ".map(c => c.dataset.cutout); })()")
    assert len(picks) == n_cards >= 4
    approve, exclude, wrong = picks[:3]

    b.js(f"{card(approve)}.querySelector('.rv-do-approve').click()")
    assert b.wait(f"{card(approve)}.querySelector('.rv .rv-badge')?.textContent") == "approved"
    assert b.wait("document.querySelector('[data-rv=reviewed]').textContent === '1'")
    b.js(f"{card(exclude)}.querySelector('.rv-do-exclude').click()")
    assert b.wait(f"{card(exclude)}.querySelector('.rv .rv-badge')?.textContent") == "excluded"

    b.js(f"{card(wrong)}.querySelector('.rv-do-wrong_grade').click()")
    assert b.js(f"{card(wrong)}.querySelector('.rv-form').hidden") is False
    assert b.js(f"document.activeElement === {card(wrong)}.querySelector('.rv-reason')")
    b.js(f"{card(wrong)}.querySelector('.rv-send').click()")  # no reason yet: nothing is sent
    assert b.js(f"{card(wrong)}.querySelector('.rv-msg').textContent") == "give a reason"
    b.js(f"{card(wrong)}.querySelector('.rv-reason').focus()")
    b.type_text("hands cut off, should be D")
    b.js(f"{card(wrong)}.querySelector('.rv-send').click()")
    assert b.wait(f"{card(wrong)}.querySelector('.rv .rv-badge')?.textContent") == "wrong grade: hands cut off, should be D"
    assert b.wait(f"{card(wrong)}.querySelector('.rv-form').hidden")

    rows = [json.loads(line) for line in ws.reviews.read_text().splitlines()]
    assert [(r["cutout"], r["verdict"], r["who"]) for r in rows] == \
        [(approve, "approve", "kana"), (exclude, "exclude", "kana"), (wrong, "wrong_grade", "kana")]
    assert rows[2]["reason"] == "hands cut off, should be D"
    lora = {c: b.js(f"{card(c)}.querySelector('.ok') !== null") for c in picks[:3]}
    agreed = lora[approve] + (not lora[exclude])  # the wrong-grade one never agrees
    shown = counts(b)
    assert {k: shown[k] for k in ("reviewed", "approved", "excluded", "wrong_grade")} == \
        {"reviewed": "3", "approved": "1", "excluded": "1", "wrong_grade": "1"}
    assert shown["grade_agreed"] == f"{int(round(agreed / 3, 4) * 100 + 0.5)} %"

    # a reload shows the reviews from the server
    assert b.goto(f"{base}/tracker/QCC-011/index.html") == 200
    assert b.wait(READY) == "on"
    assert badges(b, exclude) == ["excluded"] and counts(b)["reviewed"] == "3"

    # a cut-out that changed after the page loaded is refused, and the page says why
    png = ws.extract / approve.split("/")[0] / f"char_{approve.split('/')[1]}.png"
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    img[0, 0] = 255 - img[0, 0]
    cv2.imwrite(str(png), img)
    b.js(f"{card(approve)}.querySelector('.rv-do-exclude').click()")
    assert b.wait(f"{card(approve)}.querySelector('.rv-msg').textContent") == \
        "the cut-out changed since the page was loaded"
    assert badges(b, approve) == ["approved"] and len(ws.reviews.read_text().splitlines()) == 3
    b.screenshot(tmp_path / "review.png")

    # the same dashboard from disk: read-only, no buttons
    b.set_headers({})
    b.open_file(ws.dashboard / "index.html")
    assert b.wait(READY) == "off"
    assert b.js("document.querySelectorAll('.card').length") == n_cards
    assert b.js("document.querySelectorAll('button, .rv-actions, .rv-form').length") == 0
    assert b.js("document.getElementById('review-mode').textContent").startswith("Read-only")
