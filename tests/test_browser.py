"""The served dashboard in a real headless Chromium: it renders, its images load, the
filters hide and show cards, and without the login there is only a 401."""
import base64

import pytest

from kirinuki.publish.serve import PASSWORD_ENV, USER_ENV, make_server

import localhttp
from cdp import Browser, chromium_path
from works import tracked

pytestmark = [pytest.mark.slow, pytest.mark.skipif(chromium_path() is None,
                                                   reason="Debian's chromium is not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def browser_on_dashboard(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("browser") / "root"
    tracked(root, tiny_model)
    server = localhttp.start(make_server(root, "127.0.0.1", 0, env={USER_ENV: "kana", PASSWORD_ENV: "correct horse battery"}))
    browser = Browser()
    yield browser, f"http://127.0.0.1:{server.server_port}"
    browser.close()
    localhttp.stop(server)


def test_dashboard_in_chromium(browser_on_dashboard, tmp_path):
    b, base = browser_on_dashboard
    b.set_headers({})
    assert b.goto(f"{base}/tracker/QCC-011/") == 401
    assert "QCC-011" not in b.js("document.body.innerText")

    b.set_headers({"Authorization": "Basic " + base64.b64encode(b"kana:correct horse battery").decode()})
    assert b.goto(f"{base}/tracker/QCC-011/") == 200
    assert b.js("document.querySelectorAll('.card').length") == 6
    widths = b.js("Promise.all([...document.images].map(i => i.decode().then(() => i.naturalWidth, () => 0)))")
    # every thumbnail and overlay loaded, and the failure patterns' map and examples
    assert len(widths) > 12 and min(widths) > 0

    visible = "[...document.querySelectorAll('.card')].filter(c => !c.hidden).length"
    grades = b.js("[...document.querySelectorAll('.card')].map(c => c.dataset.grade)")
    g = grades[0]
    b.js(f"(() => {{ const box = document.querySelector('input[name=grade][value={g}]'); box.click(); }})()")
    assert b.js(visible) == 6 - grades.count(g)
    assert b.js("document.getElementById('shown').textContent") == f"{6 - grades.count(g)} / 6 shown"
    b.js(f"document.querySelector('input[name=grade][value={g}]').click()")
    assert b.js(visible) == 6

    reasons = b.js("[...document.querySelectorAll('.card')].map(c => c.dataset.reasons)")
    b.js("(() => { const s = document.getElementById('reason'); s.value = '-'; s.dispatchEvent(new Event('change')); })()")
    assert b.js(visible) == reasons.count("")
    r = next(x for x in reasons if x).split()[0]  # the tiny pages' cut-outs are flagged (too_small)
    b.js(f"(() => {{ const s = document.getElementById('reason'); s.value = '{r}'; "
         "s.dispatchEvent(new Event('change')); })()")
    assert b.js(visible) == sum(r in x.split() for x in reasons) > 0

    assert b.goto(f"{base}/") == 200
    assert b.js("document.querySelector('#trackers a').getAttribute('href')") == "/tracker/QCC-011/"
    b.screenshot(tmp_path / "index.png")
    assert (tmp_path / "index.png").read_bytes()[:4] == b"\x89PNG"
