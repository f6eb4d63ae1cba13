"""The dataset's SQLite index (`DATASET/index.sqlite`) and which items training runs saw.

`kirinuki export` rewrites the items and tags; the runs and usage tables are history and are
kept across re-exports. A run stores only its own counts; a run that resumes another (its
parent) adds up along its lineage, so summing all runs never counts a resumed run twice.
Usage is keyed by the cut-out's sha256, so it follows a cut-out that is exported again, and
usage of cut-outs no longer in the dataset stays recorded but is not reported.
"""
from __future__ import annotations

import hashlib
import re
import sqlite3
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal, Optional

import numpy as np

INDEX = "index.sqlite"  # in a dataset folder
EXPORTS_NAME = "datasets.txt"  # in a tracker workspace: the dataset folders exported from it, one a line
SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
IMAGE_EXT = r"(?:\.(?i:png|jpe?g|webp))"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
SHA256 = re.compile(r"[0-9a-f]{64}")
ITEM_KEYS = ("cutout_sha256", "name", "caption", "tags", "grade", "framing", "character", "source_page", "review")
STRATEGIES = ("min-usage", "uniform")
BALANCE = ("framing", "character")

SCHEMA = """
CREATE TABLE items (cutout_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, caption TEXT NOT NULL,
                    grade TEXT, framing TEXT, character TEXT, source_page TEXT NOT NULL, review TEXT);
CREATE TABLE tags (item TEXT NOT NULL REFERENCES items(cutout_sha256) ON DELETE CASCADE, tag TEXT NOT NULL,
                   PRIMARY KEY (item, tag));
CREATE TABLE runs (name TEXT PRIMARY KEY, parent TEXT REFERENCES runs(name), recorded_at TEXT NOT NULL,
                   log_sha256 TEXT NOT NULL);
CREATE TABLE usage (run TEXT NOT NULL REFERENCES runs(name), item TEXT NOT NULL, times INTEGER NOT NULL,
                    PRIMARY KEY (run, item))
"""  # usage.item has no foreign key to items: usage outlives the items a re-export drops


class UsageError(ValueError):
    """A bad index, log or run name; str() is one line naming the file and the reason."""


@contextmanager
def _db(path: Path, write: bool = False) -> Iterator[sqlite3.Connection]:
    """The index at `path`, checked for its schema version. `write` opens (or creates) it inside
    one transaction that commits on success and rolls back on any error; readers open read-only."""
    path = Path(path)
    if path.exists():
        if not path.is_file():
            raise UsageError(f"{path}: not a file")
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:  # sqlite itself notices only on the first query, less clearly
            raise UsageError(f"{path}: not an SQLite index (damaged, or another file); re-export the dataset")
    elif not write:
        raise UsageError(f"{path}: no dataset index; run `kirinuki export` first")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = (sqlite3.connect(path, timeout=30, isolation_level=None) if write else
               sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30, isolation_level=None))
    except sqlite3.Error as e:
        raise UsageError(f"{path}: cannot open the index ({e})") from None
    with closing(con):
        try:
            con.execute("PRAGMA foreign_keys = ON")  # a no-op inside a transaction, so before BEGIN
            if write:
                con.execute("BEGIN IMMEDIATE")  # serializes writers, so check-then-insert is atomic
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and write and not con.execute("SELECT 1 FROM sqlite_master").fetchone():
                for stmt in SCHEMA.split(";"):  # not executescript: it would commit mid-transaction
                    con.execute(stmt)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version == 0:
                raise UsageError(f"{path}: not a kirinuki dataset index; re-export into a new folder")
            elif version != SCHEMA_VERSION:
                raise UsageError(f"{path}: index schema version {version}, this kirinuki reads version "
                                 f"{SCHEMA_VERSION}; re-export into a new folder")
            yield con
            if write:
                con.execute("COMMIT")
        except BaseException as e:
            if con.in_transaction:
                con.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise UsageError(f"{path}: damaged index ({e}); re-export the dataset") from None
            raise


def write_index(path: Path, items: list[dict]) -> None:
    """Create or update the index at `path`: items and tags become `items`, in one transaction;
    runs and usage are kept."""
    rows, tags, names, shas = [], [], set(), set()
    for i, it in enumerate(items):
        if missing := [k for k in ITEM_KEYS if k not in it]:
            raise UsageError(f"{path}: item {i} lacks {', '.join(missing)}")
        sha, name = it["cutout_sha256"], it["name"]
        if not isinstance(sha, str) or not SHA256.fullmatch(sha):
            raise UsageError(f"{path}: item {i} ({name!r}): {sha!r} is not a sha256")
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\\n\r\t"):
            raise UsageError(f"{path}: item {i}: {name!r} is not a file name stem")
        if name in names or sha in shas:
            raise UsageError(f"{path}: item {i} ({name!r}): its name or cut-out is already in the dataset")
        names.add(name)
        shas.add(sha)
        rows.append((sha, name, it["caption"], it["grade"], it["framing"], it["character"],
                     str(it["source_page"]), it["review"]))
        tags += [(sha, t) for t in it["tags"]]
    with _db(path, write=True) as con:
        con.execute("DELETE FROM tags")
        con.execute("DELETE FROM items")
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?)", tags)


def _names_pattern(names: list[str]) -> str:
    """One regex matching any of `names`, as a trie: a plain alternation of thousands of names
    tries each one at every position of the log, which is far too slow for trainer logs."""
    trie: dict = {}
    for name in names:
        node = trie
        for ch in name:
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a name

    def render(node: dict) -> str:
        end = "" in node
        alts = [re.escape(ch) + render(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        # greedy optional: the longer name is tried first, the shorter one on backtracking
        return f"(?:{body})?" if end else body

    return render(trie)


def _sightings(text: str, names: list[str]) -> tuple[dict[str, int], int, int]:
    """name -> occurrences in `text`, the non-blank lines, and those naming no item."""
    counts: dict[str, int] = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not names:
        return counts, len(lines), len(lines)
    # a whole token: not inside a word, an optional image extension, then no other extension
    # (`name.txt` is the caption, `name.npz` a latent cache: not the image being seen)
    token = re.compile(rf"(?<!\w)({_names_pattern(names)}){IMAGE_EXT}?(?![\w]|\.\w)")
    unmatched = 0
    for line in lines:
        found = token.findall(line)
        unmatched += not found
        for name in found:
            counts[name] = counts.get(name, 0) + 1
    return counts, len(lines), unmatched


def record_usage(path: Path, run: str, log: Path, parent: Optional[str] = None) -> dict:
    """Record which items training run `run` saw, from `log` (a list of image paths or names,
    or a trainer log): each whole-token occurrence of an item's name is one sighting."""
    for what, value in (("run", run), ("parent", parent)):
        if value is not None and (not isinstance(value, str) or not RUN_NAME.fullmatch(value)):
            raise UsageError(f"{path}: {what} name {value!r}: use letters, digits, '.', '_', '+', '-' "
                             "(starting with a letter or digit)")
    try:
        data = Path(log).read_bytes()
    except OSError as e:
        raise UsageError(f"{log}: cannot read the log ({e.strerror or e})") from None
    text = data.decode("utf-8", errors="replace")  # trainer logs carry stray bytes; names are ASCII-safe anyway
    with _db(path, write=True) as con:
        if con.execute("SELECT 1 FROM runs WHERE name = ?", (run,)).fetchone():
            raise UsageError(f"{path}: run {run!r} is already recorded; pick a new name")
        if parent is not None and not con.execute("SELECT 1 FROM runs WHERE name = ?", (parent,)).fetchone():
            raise UsageError(f"{path}: parent run {parent!r} is not recorded")
        log_sha = hashlib.sha256(data).hexdigest()
        same_log = [r for (r,) in con.execute("SELECT name FROM runs WHERE log_sha256 = ?", (log_sha,))]
        by_name = dict(con.execute("SELECT name, cutout_sha256 FROM items"))
        counts, lines, unmatched = _sightings(text, sorted(by_name))
        if not counts:  # a wrong log would take the run's name for good
            raise UsageError(f"{log}: no line names an image of this dataset (wrong log, or another dataset?); "
                             "nothing recorded")
        con.execute("INSERT INTO runs VALUES (?, ?, ?, ?)",
                    (run, parent, datetime.now(timezone.utc).isoformat(timespec="seconds"), log_sha))
        con.executemany("INSERT INTO usage VALUES (?, ?, ?)", [(run, by_name[n], k) for n, k in counts.items()])
    return {"run": run, "parent": parent, "sightings": sum(counts.values()), "items_seen": len(counts),
            "lines": lines, "unmatched_lines": unmatched,
            "warning": f"{log}: the same log was already recorded as run {same_log[0]!r} (counted twice now)"
            if same_log else None}


def _times(con: sqlite3.Connection, path: Path, run: Optional[str]) -> dict[str, int]:
    """cutout_sha256 -> times seen, for every current item, in name order."""
    if run is None:
        runs_sql, args = "SELECT name FROM runs", ()
    else:
        if not con.execute("SELECT 1 FROM runs WHERE name = ?", (run,)).fetchone():
            raise UsageError(f"{path}: run {run!r} is not recorded")
        runs_sql = ("WITH RECURSIVE lineage(name) AS (SELECT ? UNION SELECT runs.parent FROM runs "
                    "JOIN lineage ON runs.name = lineage.name WHERE runs.parent IS NOT NULL) SELECT name FROM lineage")
        args = (run,)  # UNION, not UNION ALL: ends even if a hand-edited index has a parent cycle
    rows = con.execute(f"SELECT i.cutout_sha256, COALESCE(SUM(u.times), 0) FROM items i LEFT JOIN usage u "
                       f"ON u.item = i.cutout_sha256 AND u.run IN ({runs_sql}) GROUP BY i.cutout_sha256 "
                       "ORDER BY i.name", args)
    return {sha: int(t) for sha, t in rows}


def times_seen(path: Path, run: Optional[str] = None) -> dict[str, int]:
    """cutout_sha256 -> times seen (0 if never), for each item in the index: over all runs, or
    over `run` and the runs it resumes."""
    with _db(path) as con:
        return _times(con, Path(path), run)


def usage_stats(path: Path) -> dict:
    """Items, the recorded runs (oldest first) with the sightings of current items, how many
    items no run saw, and name -> times seen for the others."""
    with _db(path) as con:
        times = _times(con, Path(path), None)
        names = dict(con.execute("SELECT cutout_sha256, name FROM items"))
        runs = [{"name": n, "parent": p, "recorded_at": at, "sightings": int(s)} for n, p, at, s in con.execute(
            "SELECT r.name, r.parent, r.recorded_at, COALESCE(SUM(i.times), 0) FROM runs r LEFT JOIN "
            "(SELECT u.run, u.times FROM usage u JOIN items ON items.cutout_sha256 = u.item) i ON i.run = r.name "
            "GROUP BY r.name ORDER BY r.recorded_at, r.rowid")]
    return {"items": len(times), "runs": runs, "never_seen": sum(t == 0 for t in times.values()),
            "seen": {names[sha]: t for sha, t in times.items() if t}}


def sample(path: Path, strategy: Literal["min-usage", "uniform"] = "min-usage", n: Optional[int] = None,
           seed: int = 0, balance: Optional[Literal["framing", "character"]] = None,
           run: Optional[str] = None) -> list[dict]:
    """Items in the order to train on: [{"name", "cutout_sha256", "times_seen", "weight"}].
    min-usage: least seen first (weight 1/(1+times)), ties by a seeded weighted random key;
    uniform: a seeded shuffle. `balance` deals one item per framing/character group in turn."""
    if strategy not in STRATEGIES:
        raise UsageError(f"{path}: strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if balance is not None and balance not in BALANCE:
        raise UsageError(f"{path}: balance {balance!r}: use one of {', '.join(BALANCE)}")
    if n is not None and n < 0:
        raise UsageError(f"{path}: n={n}: cannot sample a negative number of items")
    with _db(path) as con:
        times = _times(con, Path(path), run)
        # `balance` is one of BALANCE, so it is safe to name as a column
        items = list(con.execute(f"SELECT name, cutout_sha256, {balance or 'NULL'} FROM items ORDER BY name"))
    rng = np.random.default_rng(seed)
    u = rng.random(len(items))  # drawn in name order, so the result depends on the seed and index only
    if strategy == "uniform":
        order = [int(i) for i in rng.permutation(len(items))]
        weights = [1.0] * len(items)
    else:
        weights = [1.0 / (1 + times[sha]) for _, sha, _ in items]
        # Efraimidis-Spirakis key log(u)/w: the larger the weight, the likelier first (1-u avoids log 0)
        keys = [float(np.log1p(-u[i])) / weights[i] for i in range(len(items))]
        order = sorted(range(len(items)), key=lambda i: (times[items[i][1]], -keys[i], items[i][0]))
    if balance:
        groups: dict[str, list[int]] = {}
        for i in order:  # each group keeps the strategy's own order
            groups.setdefault("unknown" if items[i][2] is None else str(items[i][2]), []).append(i)
        queues = [groups[g] for g in sorted(groups)]
        order = [q[k] for k in range(max(map(len, queues), default=0)) for q in queues if k < len(q)]
    out = [{"name": items[i][0], "cutout_sha256": items[i][1], "times_seen": times[items[i][1]],
            "weight": weights[i]} for i in order]
    return out if n is None else out[:n]


def kohya_repeats(sampled: list[dict], base_repeats: int) -> dict[int, list[str]]:
    """repeats -> names (in `sampled` order), repeats = max(1, round(base * weight / max weight)),
    for kohya's `<repeats>_<trigger> <class>` folders; most repeats first."""
    if base_repeats < 1:
        raise UsageError(f"base_repeats={base_repeats}: must be at least 1")
    if not sampled:
        return {}
    top = max(s["weight"] for s in sampled)
    out: dict[int, list[str]] = {}
    for s in sampled:
        out.setdefault(max(1, round(base_repeats * s["weight"] / top)) if top > 0 else 1, []).append(s["name"])
    return dict(sorted(out.items(), reverse=True))


# --- the datasets a tracker workspace was exported to ------------------------------------------

def linked_datasets(exports: Optional[Path]) -> list[Path]:
    """The dataset folders a workspace's datasets.txt names."""
    if exports is None or not Path(exports).is_file():
        return []
    return [Path(line) for line in Path(exports).read_text(encoding="utf-8").splitlines() if line.strip()]


def training_usage(exports: Optional[Path]) -> Optional[dict[str, int]]:
    """Cut-out sha256 -> times training runs saw it, summed over the datasets exported from a
    workspace (those still there and readable); None when nothing was exported."""
    seen: dict[str, int] = {}
    found = False
    for d in linked_datasets(exports):
        try:
            counts = times_seen(d / INDEX)
        except UsageError:  # a dataset moved or removed since: it no longer counts
            continue
        found = True
        for sha, n in counts.items():
            seen[sha] = seen.get(sha, 0) + n
    return seen if found else None
