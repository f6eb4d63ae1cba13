"""The review -> export -> check loop on a real tracker run, in headless Chromium (an acceptance
check run by hand; `tests/test_review_browser.py` and `tests/test_export.py` are the automated ones):

    python tests/e2e_review_export.py ROOT TRACKER_ID OUT

serves ROOT's dashboards, approves two cut-outs and excludes one in the browser, exports the
workspace in the three layouts to OUT/dataset, runs `kirinuki export --check`, tampers with one
caption and checks that `--check` names it. Prints one line per step; exit 0 when all hold.
"""
import base64
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import localhttp  # noqa: E402
from cdp import Browser  # noqa: E402

from kirinuki.publish.serve import PASSWORD_ENV, USER_ENV, make_server  # noqa: E402
from kirinuki.publish.workspace import find_workspaces  # noqa: E402

USER, PASSWORD = "reviewer", "e2e correct horse battery"


def main(root: Path, tracker_id: str, out: Path) -> int:
    ws = find_workspaces(root)[tracker_id]
    before = len(ws.reviews.read_text().splitlines()) if ws.reviews.is_file() else 0
    server = localhttp.start(make_server(root, "127.0.0.1", 0, env={USER_ENV: USER, PASSWORD_ENV: PASSWORD}))
    b = Browser()
    try:
        b.set_headers({"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
        assert b.goto(f"http://127.0.0.1:{server.server_port}/tracker/{tracker_id}/") == 200
        assert b.wait("document.body.dataset.review") == "on"
        picks = b.js("(() => { const seen = new Set(); return [...document.querySelectorAll('.card')]"
                     ".filter(c => c.dataset.sha256 && !seen.has(c.dataset.sha256) && seen.add(c.dataset.sha256))"
                     ".map(c => c.dataset.cutout); })()")
        for cutout, verdict in zip(picks[:3], ["approve", "approve", "exclude"]):
            card = f"document.querySelector('.card[data-cutout=\"{cutout}\"]')"
            b.js(f"{card}.querySelector('.rv-do-{verdict}').click()")
            badge = b.wait(f"{card}.querySelector('.rv .rv-badge')?.textContent")
            print(f"browser: {verdict} {cutout} -> badge {badge!r}")
        shown = b.js("Object.fromEntries([...document.querySelectorAll('[data-rv]')].map(e => [e.dataset.rv, e.textContent]))")
        print(f"browser: counts on the page {shown}")
    finally:
        b.close()
        localhttp.stop(server)
    rows = [json.loads(line) for line in ws.reviews.read_text().splitlines()][before:]
    print(f"reviews.jsonl: {len(rows)} new line(s): {[(r['cutout'], r['verdict'], r['who']) for r in rows]}")
    dataset = out / "dataset"
    kirinuki = [sys.executable, "-m", "kirinuki.cli"]
    done = subprocess.run([*kirinuki, "export", str(ws.dir), "-o", str(dataset)], capture_output=True, text=True)
    print(f"export (exit {done.returncode}): {done.stdout.strip()}")
    m = json.loads((dataset / "manifest.json").read_text())
    exported = {it["cutout"] for it in m["items"]}
    print(f"export: approved ones in the set {[c for c in picks[:2] if c in exported]}, "
          f"excluded one in the set: {picks[2] in exported}")
    check = subprocess.run([*kirinuki, "export", "--check", str(dataset)], capture_output=True, text=True)
    print(f"check (exit {check.returncode}): {check.stdout.strip()}")
    caption = sorted((dataset / "ai-toolkit").glob("*.txt"))[0]
    caption.write_text(caption.read_text() + "tampered\n")
    tampered = subprocess.run([*kirinuki, "export", "--check", str(dataset)], capture_output=True, text=True)
    print(f"check after tampering with {caption.name} (exit {tampered.returncode}): {tampered.stderr.strip()}")
    ok = (len(rows) == 3 and set(picks[:2]) <= exported and picks[2] not in exported and check.returncode == 0
          and tampered.returncode == 1 and caption.name in tampered.stderr)
    print("ALL HOLD" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
