"""Rebuild the real-page evaluation corpus from its manifest (corpus/realpages.csv).

Each manifest row names one page: where its bytes live (a GitHub repository pinned to a commit,
or `local:realart` for files that exist only in a local folder of gathered art) and their
sha256. `build_corpus` writes `out/<source>/<page><ext>` for every row: it skips a file that is
already there with the right sha256, otherwise takes the bytes from a local bare mirror
(`<mirror_root>/<owner>+<name>/repo`, read with `git show <commit>:<path>`) or downloads them
from raw.githubusercontent.com, checks the sha256 and only then writes the file. A failed row
never stops the batch; each failure is one line naming the page and the reason.

The corpus is evaluation material (some rows are non-commercial): it is never committed and
never used to train a shipped model.
"""
from __future__ import annotations

import csv
import hashlib
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kirinuki.core.cards import sha256_file
from kirinuki.core.imageio import atomic_path

COLUMNS = ("page", "source", "repo", "commit", "path", "sha256", "licence", "licence_where",
           "kind", "panels", "use", "notes")
KINDS = {"manga_mono", "manga_colour", "comic_colour", "cover", "cg", "illustration"}
# evaluation: the licence allows evaluation only (non-commercial); training: it allows a shipped model
# to be fitted on the page too (`kirinuki calibrate` fits the score weights on these, never on the others)
USES = ("evaluation", "training")
LOCAL = "local:realart"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
TIMEOUT_S = 30.0


class ManifestError(Exception):
    """The manifest cannot be used at all (missing file or columns, bad or duplicate rows)."""


class RowError(Exception):
    """One row could not be materialised; str() is the one-line reason."""


class Offline(RowError):
    """The download host could not be reached at all (not an HTTP error)."""


def read_manifest(manifest: Path) -> list[dict]:
    """The manifest's rows, checked: every column present, unique pages, sha256 of 64 hex
    digits, a known kind and use (USES), and a 40-hex commit except for local rows."""
    manifest = Path(manifest)
    try:
        with open(manifest, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError(f"{manifest}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(f"{manifest}: cannot read ({e})") from e
    seen, problems = set(), []
    for n, row in enumerate(rows, start=2):
        where = f"{manifest}:{n}"
        page = (row.get("page") or "").strip()
        if not page or "/" in page or "\\" in page or page.startswith("."):
            problems.append(f"{where}: bad page name {page!r}")
        elif page in seen:
            problems.append(f"{where}: duplicate page {page!r}")
        seen.add(page)
        source = (row.get("source") or "").strip()
        if not source or "/" in source or "\\" in source or source.startswith("."):
            problems.append(f"{where}: bad source {source!r}")
        sha = (row.get("sha256") or "").strip().lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            problems.append(f"{where}: sha256 is not 64 hex digits")
        if row.get("kind") not in KINDS:
            problems.append(f"{where}: unknown kind {row.get('kind')!r}")
        if row.get("use") not in USES:
            problems.append(f"{where}: use must be one of {', '.join(USES)}, not {row.get('use')!r}")
        repo, commit = row.get("repo") or "", (row.get("commit") or "").strip()
        if repo != LOCAL:
            if repo.count("/") != 1 or not all(repo.split("/")):
                problems.append(f"{where}: repo {repo!r} is not owner/name or {LOCAL}")
            if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit.lower()):
                problems.append(f"{where}: commit {commit!r} is not 40 hex digits")
        if not (row.get("path") or "").strip():
            problems.append(f"{where}: empty path")
    if problems:
        raise ManifestError("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    return rows


def target(out: Path, row: dict) -> Path:
    """Where a row's file goes: out/<source>/<page><suffix of its path>."""
    return Path(out) / row["source"] / (row["page"] + Path(row["path"]).suffix.lower())


def _from_mirror(row: dict, mirror_root: Path) -> bytes:
    owner, name = row["repo"].split("/")
    gitdir = Path(mirror_root) / f"{owner}+{name}" / "repo"
    if (gitdir / ".git").is_dir():  # a non-bare copy: its git directory is inside
        gitdir = gitdir / ".git"
    if not gitdir.is_dir():
        raise RowError(f"no mirror at {gitdir}")
    try:
        r = subprocess.run(["git", "--git-dir", str(gitdir), "show", f"{row['commit']}:{row['path']}"],
                           capture_output=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RowError(f"git show failed ({e})") from e
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RowError(f"git show {row['commit'][:12]}:{row['path']}: {msg[-1] if msg else 'failed'}")
    return r.stdout


def _download(row: dict, timeout: float) -> bytes:
    url = RAW_URL.format(repo=row["repo"], commit=row["commit"], path=urllib.parse.quote(row["path"]))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise RowError(f"{url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError) as e:  # offline, DNS, refused, timed out
        reason = getattr(e, "reason", e)
        raise Offline(f"{url}: cannot download ({reason}); offline? use --mirror") from e


def _from_realart(row: dict, realart: Path) -> bytes:
    src = Path(realart) / row["path"]
    if not src.is_file():
        raise RowError(f"not in --realart: {src}")
    return src.read_bytes()


def build_corpus(manifest: Path, out: Path, mirror_root: Path | None, log: Callable[[str], None] = print,
                 realart: Path | None = None, timeout: float = TIMEOUT_S) -> tuple[int, int, int]:
    """Materialise every manifest row under `out`; return (written, skipped, failed).

    skipped counts rows whose file is already present with the right sha256 and `local:realart`
    rows when no `realart` folder is given (each logged with its reason). A row whose bytes
    cannot be had or do not match its sha256 is a failure: one `error:` line, nothing written,
    and the batch goes on. Raises ManifestError when the manifest itself is unusable."""
    rows = read_manifest(manifest)
    written = skipped = failed = 0
    offline = None  # after the host is unreachable once, later downloads fail at once (fail fast)
    for row in rows:
        dest = target(out, row)
        want = row["sha256"].strip().lower()
        if dest.is_file() and sha256_file(dest) == want:
            skipped += 1
            continue
        if row["repo"] == LOCAL and realart is None:
            log(f"skipped {row['page']}: {LOCAL} row, give --realart DIR to copy it")
            skipped += 1
            continue
        try:
            if row["repo"] == LOCAL:
                data = _from_realart(row, realart)
            elif mirror_root is not None:
                data = _from_mirror(row, mirror_root)
            elif offline is not None:
                raise RowError(f"not downloaded, the host is unreachable ({offline})")
            else:
                try:
                    data = _download(row, timeout)
                except Offline as e:
                    offline = str(getattr(e.__cause__, "reason", e.__cause__) or e)
                    raise
            got = hashlib.sha256(data).hexdigest()
            if got != want:
                raise RowError(f"sha256 mismatch (got {got[:12]}..., manifest says {want[:12]}...)")
            with atomic_path(dest) as tmp:
                tmp.write_bytes(data)
        except RowError as e:
            log(f"error: {row['page']}: {e}")
            failed += 1
            continue
        written += 1
    log(f"corpus {out}: {written} written, {skipped} skipped, {failed} failed ({len(rows)} rows)")
    return written, skipped, failed
