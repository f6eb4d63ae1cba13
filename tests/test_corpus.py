"""The real-page corpus: the manifest stays clear of reserved art, and `kirinuki corpus` rebuilds it
from a (local, bare) git mirror, verifying every file's sha256."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from kirinuki.assets import corpus
from kirinuki.assets.corpus import COLUMNS, ManifestError, build_corpus, read_manifest
from kirinuki.cli import app
from kirinuki.core.cards import sha256_file
from kirinuki.core.framing import KINDS

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "corpus" / "realpages.csv"
RESERVED = ROOT / "corpus" / "RESERVED.md"
runner = CliRunner()


# --- the committed manifest -------------------------------------------------------------------

def reserved_patterns() -> list[tuple[str, re.Pattern, str]]:
    """(set, regex, exception) for each row of RESERVED.md's table; `\\|` in a cell is a literal |."""
    found = []
    for line in RESERVED.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 3 or cells[1] in ("regex", "") or set(cells[1]) <= set("-"):
            continue
        found.append((cells[0], re.compile(cells[1].strip("`"), re.IGNORECASE), cells[2].strip("`")))
    return found


def test_reserved_table_parses_and_covers_the_reserved_list():
    pats = reserved_patterns()
    names = " ".join(p.pattern for _, p, _ in pats)
    for word in ("doki", "dairi", "tyrano", "haunted", "wikipe", "monogatari", "katawa", "our-", "carrot",
                 "sachi", "akari", "kumiko"):
        assert word in names, word
    probe = {"doki-theme/doki-master-theme": "doki", "x/y": None, "our-comics": "our", "peppercarrot": "Pepper",
             "Pepper&Carrot": "Pepper", "deevad/pepper_and_carrot": "Pepper", "sprites/Tyrano/akane.png": "Tyrano",
             "dairi/reimu.png": "dairi", "Haunted_Heir": "Haunted", "manga/Wikipe-tan_p1.jpg": "Wikipe"}
    for text, hit in probe.items():
        matched = [s for s, p, _ in pats if p.search(text)]
        assert bool(matched) == bool(hit), (text, matched)


def test_manifest_is_well_formed_and_meets_its_targets():
    rows = read_manifest(MANIFEST)
    assert list(csv.DictReader(MANIFEST.open(encoding="utf-8")).fieldnames) == list(COLUMNS)
    assert all(r["licence"].strip() and r["licence_where"].strip() for r in rows)
    # non-commercial art may serve evaluation only, never fit a shipped model (the score weights)
    assert all(r["use"] == "evaluation" for r in rows if "NC" in r["licence"] or r["repo"] == "local:realart")
    assert len({r["sha256"] for r in rows}) == len(rows), "the same file twice"
    assert len(rows) >= 70
    assert len({r["source"] for r in rows}) >= 8
    assert sum(r["kind"] == "manga_mono" and int(r["panels"]) >= 3 for r in rows) >= 25
    assert all(r["commit"] == "unknown" for r in rows if r["repo"] == corpus.LOCAL)


def test_no_manifest_row_names_reserved_art():
    pats = reserved_patterns()
    bad = []
    for r in read_manifest(MANIFEST):
        for name, pat, exception in pats:
            if (pat.search(r["repo"]) or pat.search(r["path"])) and not (exception and r["repo"] == exception):
                bad.append(f"{r['page']}: {r['repo']}:{r['path']} matches reserved {name!r} ({pat.pattern})")
    assert not bad, "\n".join(bad)


def test_reserved_check_catches_a_katawa_row_outside_realart():
    pats = reserved_patterns()
    row = {"repo": "gcammisa/KatawaShoujo-RenPy8", "path": "game/bgs/school_gate.jpg"}
    hits = [(n, e) for n, p, e in pats if p.search(row["repo"]) or p.search(row["path"])]
    assert hits and all(not (e and row["repo"] == e) for _, e in hits)


# --- build_corpus on a tiny bare mirror --------------------------------------------------------

def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buf, "PNG")
    return buf.getvalue()


def _git(*args, cwd=None):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(cwd or "/tmp"), "PATH": "/usr/bin:/bin:/usr/local/bin"})


@pytest.fixture
def mirror(tmp_path):
    """<root>/acme+pages/repo: a bare repository with one commit of two small PNGs."""
    work = tmp_path / "work"
    (work / "pages").mkdir(parents=True)
    blobs = {"pages/one.png": _png("red"), "pages/two.png": _png("blue")}
    for p, b in blobs.items():
        (work / p).write_bytes(b)
    _git("init", "-q", cwd=work)
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "pages", cwd=work)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True,
                            text=True).stdout.strip()
    root = tmp_path / "mirrors"
    root.mkdir()
    _git("clone", "-q", "--bare", str(work), str(root / "acme+pages" / "repo"), cwd=tmp_path)
    return root, commit, blobs


def _write_manifest(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _row(page, source, repo, commit, path, data: bytes, **kw):
    row = {"page": page, "source": source, "repo": repo, "commit": commit, "path": path,
           "sha256": hashlib.sha256(data).hexdigest(), "licence": "CC0", "licence_where": "LICENSE",
           "kind": "comic_colour", "panels": "1", "use": "evaluation", "notes": ""}
    row.update(kw)
    return row


def test_build_from_mirror_checks_sha256_and_skips_on_rerun(tmp_path, mirror):
    root, commit, blobs = mirror
    good = _row("one", "acme", "acme/pages", commit, "pages/one.png", blobs["pages/one.png"])
    bad = _row("two", "acme", "acme/pages", commit, "pages/two.png", blobs["pages/two.png"], sha256="0" * 64)
    gone = _row("three", "other", "acme/pages", commit, "pages/missing.png", b"x")
    manifest = _write_manifest(tmp_path / "m.csv", [good, bad, gone])
    out, lines = tmp_path / "out", []
    assert build_corpus(manifest, out, root, log=lines.append) == (1, 0, 2)
    assert sha256_file(out / "acme" / "one.png") == good["sha256"]
    assert not (out / "acme" / "two.png").exists() and not (out / "other").exists()
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 2 and all("\n" not in e for e in errors)
    assert any("two" in e and "sha256 mismatch" in e for e in errors)
    assert any("three" in e and "missing.png" in e for e in errors)

    bad["sha256"] = hashlib.sha256(blobs["pages/two.png"]).hexdigest()  # fixed row: written, the rest skipped
    _write_manifest(manifest, [good, bad])
    assert build_corpus(manifest, out, root, log=lines.append) == (1, 1, 0)
    assert build_corpus(manifest, out, root, log=lines.append) == (0, 2, 0)
    (out / "acme" / "one.png").write_bytes(b"damaged")  # a wrong file is replaced, not trusted
    assert build_corpus(manifest, out, root, log=lines.append) == (1, 1, 0)
    assert sha256_file(out / "acme" / "one.png") == good["sha256"]


def test_local_realart_rows_need_the_folder(tmp_path):
    art = tmp_path / "realart" / "unmasked" / "ks"
    art.mkdir(parents=True)
    (art / "cg.jpg").write_bytes(b"\xff\xd8jpeg")
    row = _row("ks_cg", "ks", corpus.LOCAL, "unknown", "unmasked/ks/cg.jpg", b"\xff\xd8jpeg", kind="cg")
    manifest = _write_manifest(tmp_path / "m.csv", [row])
    lines = []
    assert build_corpus(manifest, tmp_path / "out", None, log=lines.append) == (0, 1, 0)
    assert any(l.startswith("skipped ks_cg") and "--realart" in l for l in lines)
    assert build_corpus(manifest, tmp_path / "out", None, log=lines.append, realart=tmp_path / "realart") == (1, 0, 0)
    assert (tmp_path / "out" / "ks" / "ks_cg.jpg").read_bytes() == b"\xff\xd8jpeg"


def test_offline_download_fails_fast_one_line_per_row(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "RAW_URL", "http://127.0.0.1:9/{repo}/{commit}/{path}")  # discard port: refused
    rows = [_row(f"p{i}", "s", "acme/pages", "a" * 40, f"p{i}.png", bytes([i])) for i in range(3)]
    lines = []
    assert build_corpus(_write_manifest(tmp_path / "m.csv", rows), tmp_path / "out", None,
                        log=lines.append, timeout=2) == (0, 0, 3)
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 3 and "offline?" in errors[0] and "unreachable" in errors[2]


def test_download_from_a_local_http_server(tmp_path, monkeypatch):
    import functools
    import http.server

    import localhttp
    served = tmp_path / "served" / "acme" / "pages" / ("b" * 40)
    served.mkdir(parents=True)
    (served / "page one.png").write_bytes(_png("green"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    handler.log_message = lambda *a: None
    server = localhttp.start(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler))
    try:
        monkeypatch.setattr(corpus, "RAW_URL", f"http://127.0.0.1:{server.server_port}/{{repo}}/{{commit}}/{{path}}")
        row = _row("one", "s", "acme/pages", "b" * 40, "page one.png", _png("green"))
        assert build_corpus(_write_manifest(tmp_path / "m.csv", [row]), tmp_path / "out", None,
                            log=lambda m: None) == (1, 0, 0)
    finally:
        localhttp.stop(server)
    assert sha256_file(tmp_path / "out" / "s" / "one.png") == row["sha256"]


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows, "missing column"),
    (lambda rows: rows + rows[:1], "duplicate page"),
    (lambda rows: [dict(rows[0], use="anything")], "use must be one of evaluation, training"),
    (lambda rows: [dict(rows[0], commit="HEAD")], "not 40 hex"),
])
def test_bad_manifests_are_refused(tmp_path, change, message):
    rows = [_row("one", "s", "acme/pages", "c" * 40, "p.png", b"x")]
    columns = [c for c in COLUMNS if c != "licence"] if message == "missing column" else COLUMNS
    manifest = _write_manifest(tmp_path / "m.csv", change(rows), columns)
    with pytest.raises(ManifestError, match=message):
        build_corpus(manifest, tmp_path / "out", None, log=lambda m: None)


def test_cli_exit_codes(tmp_path, mirror):
    root, commit, blobs = mirror
    good = _row("one", "acme", "acme/pages", commit, "pages/one.png", blobs["pages/one.png"])
    manifest = _write_manifest(tmp_path / "m.csv", [good])
    out = tmp_path / "out"
    r = runner.invoke(app, ["corpus", str(manifest), "-o", str(out), "--mirror", str(root)])
    assert r.exit_code == 0, r.output
    assert (out / "acme" / "one.png").is_file()
    r = runner.invoke(app, ["corpus", str(manifest), "-o", str(out), "--mirror", str(root)])
    assert r.exit_code == 0 and "0 written, 1 skipped" in r.output

    tampered = _write_manifest(tmp_path / "t.csv", [good, _row("two", "acme", "acme/pages", commit, "pages/two.png",
                                                                b"not these bytes")])
    r = runner.invoke(app, ["corpus", str(tampered), "-o", str(out), "--mirror", str(root)])
    assert r.exit_code == 1
    assert [l for l in r.output.splitlines() if l.startswith("error:")] == [
        l for l in r.output.splitlines() if l.startswith("error: two: sha256 mismatch")]

    broken = _write_manifest(tmp_path / "b.csv", [good], [c for c in COLUMNS if c != "sha256"])
    r = runner.invoke(app, ["corpus", str(broken), "-o", str(out)])
    assert r.exit_code == 2 and "missing column(s) sha256" in r.output
    r = runner.invoke(app, ["corpus", str(tmp_path / "nope.csv"), "-o", str(out)])
    assert r.exit_code == 2


TRAINING = ROOT / "corpus" / "training.csv"


def test_training_manifest_covers_the_shipped_splitters_and_no_reserved_or_nc_art():
    """Every file the shipped splitters were trained on is listed with its licence, the commit it was
    read at and its sha256; none is reserved for independent evaluation or licensed for non-commercial use only."""
    rows = list(csv.DictReader(TRAINING.open(encoding="utf-8")))
    folders = {"/".join(r["file"].split("/")[:2]) for r in rows}
    bundled = ROOT / "src" / "kirinuki" / "assets" / "bundled"
    for card in ("splitter.json", "head_splitter.json"):
        meta = __import__("json").loads((bundled / card).read_text())
        used = {"/".join(Path(d).parts[-2:]) for d in meta["sprite_dirs"] + meta["background_dirs"]}
        assert used <= folders, (card, used - folders)
    pats = reserved_patterns()
    for r in rows:
        assert r["licence"].strip() and r["licence_status"].split(":")[0] in ("clear", "unclear")
        assert re.fullmatch(r"[0-9a-f]{40}", r["commit"]) and re.fullmatch(r"[0-9a-f]{64}", r["sha256"]), r["file"]
        assert not re.search(r"\bNC\b|non-?commercial", r["licence"], re.IGNORECASE), r["file"]
        assert not any(p.search(r["repo"]) or p.search(r["path"]) for _, p, _ in pats), r["file"]


FRAMING = ROOT / "corpus" / "framing.csv"


def test_framing_table_is_licence_clean_ordered_and_what_the_shipped_tagger_learned_from():
    """Every sprite the framing tagger learned from: pinned (commit, sha256), licence-clean, not reserved;
    its landmarks run down the body; the shipped model's card names this very table."""
    rows = list(csv.DictReader(FRAMING.open(encoding="utf-8")))
    assert len(rows) >= 300
    pats = reserved_patterns()
    for r in rows:
        assert re.fullmatch(r"[0-9a-f]{40}", r["commit"]) and re.fullmatch(r"[0-9a-f]{64}", r["sha256"]), r["file"]
        assert r["licence"].strip() and not re.search(r"\bNC\b|non-?commercial", r["licence"], re.IGNORECASE), r["file"]
        assert not any(p.search(r["repo"]) or p.search(r["path"]) for _, p, _ in pats), r["file"]
        marks = [float(r[k]) for k in ("chin", "armpit", "waist", "crotch", "ankle") if r[k].strip()]
        assert marks == sorted(marks) and all(0 <= m <= 100 for m in marks), r["file"]
        assert r["skip"] in ("0", "1") and (r["kind"] in KINDS or r["skip"] == "1"), r["file"]
    card = json.loads((ROOT / "src" / "kirinuki" / "quality" / "framing.json").read_text())
    assert card["landmarks_sha256"] == hashlib.sha256(FRAMING.read_bytes()).hexdigest()
