"""Pushover notifications against a local fake endpoint; failures never raise."""
import cv2
import numpy as np
import pytest

from kirinuki.core.config import NotifyParams
from kirinuki.core.imageio import write_png
from kirinuki.publish.notify import TOKEN_ENV, USER_ENV, best_cutouts, contact_sheet, notify

from fake_pushover import FakePushover

ENV = {TOKEN_ENV: "app-token", USER_ENV: "user-key"}


@pytest.fixture
def pushover():
    fake = FakePushover()
    yield fake
    fake.close()


def cutout(path, h, w):
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = (200, 30, 30, 255)
    write_png(path, rgba)
    return path


def test_best_cutouts_prefers_lora_ready_then_score():
    rows = [{"image": "a", "k": 1, "score": 0.95, "lora_ok": False}, {"image": "b", "k": 1, "score": 0.7, "lora_ok": True},
            {"image": "c", "k": 2, "score": 0.8, "lora_ok": True}]
    assert best_cutouts(rows, 2) == [("c", 2), ("b", 1)]


def test_contact_sheet_puts_cutouts_side_by_side():
    a, b = np.zeros((100, 50, 4), np.uint8), np.zeros((200, 200, 4), np.uint8)
    img = cv2.imdecode(np.frombuffer(contact_sheet([a, b], height=80), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (80, 40 + 8 + 80, 3)
    assert img.min() > 200  # transparent pixels become white


def test_message_with_attachment(pushover, tmp_path):
    files = [cutout(tmp_path / "1.png", 60, 40), cutout(tmp_path / "2.png", 90, 90)]
    out = notify("Kirinuki QCC-011: 完了", "A 1 · B 2", "http://10.8.0.1:8765/tracker/QCC-011/", files,
                 NotifyParams(pushover_url=pushover.url), ENV)
    assert out == "notification sent (2 cut-out(s) attached)"
    [msg] = pushover.messages
    assert (msg["token"], msg["user"], msg["title"], msg["message"]) == ("app-token", "user-key",
                                                                        "Kirinuki QCC-011: 完了", "A 1 · B 2")
    assert msg["url_title"] == "dashboard" and msg["attachment"]["filename"] == "best.jpg"


def test_failures_are_reported_not_raised(pushover, tmp_path):
    pushover.status = 500
    assert notify("t", "m", None, [], NotifyParams(pushover_url=pushover.url), ENV).startswith(
        "notification failed: HTTP 500")
    down = NotifyParams(pushover_url="http://127.0.0.1:9/1/messages.json", timeout_s=2)
    assert notify("t", "m", None, [], down, ENV).startswith("notification failed: ConnectionError")
    missing = notify("t", "m", None, [tmp_path / "gone.png"], NotifyParams(pushover_url=pushover.url), ENV)
    assert missing.startswith("notification failed: BadInput")
    assert "skipped" in notify("t", "m", None, [], NotifyParams(pushover_url=pushover.url), {})
    assert len(pushover.messages) == 1  # only the 500 reached the endpoint
