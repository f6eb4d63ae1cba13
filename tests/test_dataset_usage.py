"""The dataset index and training-usage tracking: history across re-exports, lineage, sampling."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from kirinuki.dataset.usage import (UsageError, kohya_repeats, record_usage, sample, times_seen, usage_stats,
                                    write_index)


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _item(name: str, framing: str | None = "bust", character: str | None = "aoki") -> dict:
    return {"cutout_sha256": _sha(name), "name": name, "caption": f"aoki, {name}", "tags": ["1girl", "solo"],
            "grade": "good", "framing": framing, "character": character, "source_page": f"pages/{name}.png",
            "review": None}


NAMES = [f"aoki_ep01_{i:02d}_1_{_sha(str(i))[:8]}" for i in range(6)]


@pytest.fixture
def index(tmp_path: Path) -> Path:
    path = tmp_path / "ds" / "index.sqlite"
    write_index(path, [_item(n) for n in NAMES])
    return path


def _log(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path / name


def _runs(index: Path, tmp_path: Path) -> None:
    """run a: a plain list; run b: a trainer-like log with paths and noise; run c resumes b."""
    record_usage(index, "a", _log(tmp_path, "a.txt", f"{NAMES[0]}\n{NAMES[0]}.png\n{NAMES[1]}\n"))
    record_usage(index, "b", _log(tmp_path, "b.log", "\n".join([
        "epoch 1/2 steps: 100%|####| loss=0.123",
        f"loading /x/10_chara character/{NAMES[2]}.png",
        f"caption /x/10_chara character/{NAMES[2]}.txt",  # the caption, not the image
        f"cache {NAMES[2]}_0512x0512_sd.npz",  # a latent cache: another file
        f"C:\\data\\10_chara character\\{NAMES[1]}.JPG, {NAMES[1]}.webp",
        f"not_{NAMES[3]} {NAMES[3]}x",  # inside other words: no sighting
    ])))
    record_usage(index, "c", _log(tmp_path, "c.log", f"step 5 {NAMES[2]}.png\n"), parent="b")


def test_index_tables_and_reexport_keep_history(index: Path, tmp_path: Path):
    with sqlite3.connect(index) as con:
        assert con.execute("SELECT count(*) FROM items").fetchone()[0] == 6
        assert con.execute("SELECT count(*) FROM tags").fetchone()[0] == 12
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    con.close()
    record_usage(index, "a", _log(tmp_path, "a.txt", f"{NAMES[0]}\n{NAMES[5]}\n"))
    # a re-export drops item 5 and adds a new one: item 0's history stays, 5's is kept but not reported
    new = "aoki_ep02_01_1_deadbeef"
    write_index(index, [_item(n) for n in NAMES[:5]] + [_item(new)])
    seen = times_seen(index)
    assert seen[_sha(NAMES[0])] == 1 and seen[_sha(new)] == 0 and _sha(NAMES[5]) not in seen
    with sqlite3.connect(index) as con:
        assert con.execute("SELECT count(*) FROM usage WHERE item = ?", (_sha(NAMES[5]),)).fetchone()[0] == 1
    con.close()
    stats = usage_stats(index)
    assert stats["items"] == 6 and stats["never_seen"] == 5 and stats["seen"] == {NAMES[0]: 1}
    assert stats["runs"][0]["name"] == "a" and stats["runs"][0]["sightings"] == 1


def test_record_runs_and_lineage(index: Path, tmp_path: Path):
    _runs(index, tmp_path)
    with sqlite3.connect(index) as con:
        own = dict(con.execute("SELECT run, sum(times) FROM usage GROUP BY run"))
    con.close()
    assert own == {"a": 3, "b": 3, "c": 1}  # each run stores its own counts only
    total = times_seen(index)
    assert [total[_sha(n)] for n in NAMES] == [2, 3, 2, 0, 0, 0]
    assert [times_seen(index, "c")[_sha(n)] for n in NAMES] == [0, 2, 2, 0, 0, 0]  # c plus b
    assert [times_seen(index, "b")[_sha(n)] for n in NAMES] == [0, 2, 1, 0, 0, 0]
    assert [times_seen(index, "a")[_sha(n)] for n in NAMES] == [2, 1, 0, 0, 0, 0]
    stats = usage_stats(index)
    assert [(r["name"], r["parent"], r["sightings"]) for r in stats["runs"]] == \
        [("a", None, 3), ("b", None, 3), ("c", "b", 1)]
    assert stats["never_seen"] == 3 and stats["seen"] == {NAMES[0]: 2, NAMES[1]: 3, NAMES[2]: 2}


def test_record_result_counts_lines_and_says_when_nothing_matched(index: Path, tmp_path: Path):
    res = record_usage(index, "a", _log(tmp_path, "a.log", f"noise\n\n/x/{NAMES[4]}.jpeg ok {NAMES[4]}\n"))
    assert res == {"run": "a", "parent": None, "sightings": 2, "items_seen": 1, "lines": 2,
                   "unmatched_lines": 1, "warning": None}
    with pytest.raises(UsageError, match="no line names an image of this dataset"):
        record_usage(index, "z", _log(tmp_path, "z.log", "loss 0.1\nother_dataset_img.png\n"))
    assert "z" not in [r["name"] for r in usage_stats(index)["runs"]]  # the name stays free for the right log


def test_min_usage_sample_puts_never_seen_first_and_is_seeded(index: Path, tmp_path: Path):
    _runs(index, tmp_path)
    got = sample(index, seed=0)
    assert [s["times_seen"] for s in got] == [0, 0, 0, 2, 2, 3]
    assert {s["name"] for s in got[:3]} == set(NAMES[3:])
    assert got[-1] == {"name": NAMES[1], "cutout_sha256": _sha(NAMES[1]), "times_seen": 3, "weight": 0.25}
    assert sample(index, seed=0) == got
    orders = {tuple(s["name"] for s in sample(index, seed=seed)) for seed in range(8)}
    assert len(orders) > 1  # ties (the never-seen three, the twice-seen two) fall differently
    assert sample(index, n=2, seed=0) == got[:2]
    lineage = sample(index, run="a")  # as seen by run a's lineage: 2..5 never, 1 once, 0 twice
    assert [s["times_seen"] for s in lineage] == [0, 0, 0, 0, 1, 2]
    uniform = sample(index, "uniform", seed=3)
    assert sorted(s["name"] for s in uniform) == NAMES and {s["weight"] for s in uniform} == {1.0}
    assert uniform == sample(index, "uniform", seed=3)


def test_balance_interleaves_groups(tmp_path: Path):
    path = tmp_path / "index.sqlite"
    framings = ["bust", "bust", "bust", "full", "full", None]
    write_index(path, [_item(n, framing=f) for n, f in zip(NAMES, framings)])
    got = sample(path, balance="framing", seed=1)
    by_name = dict(zip(NAMES, [f or "unknown" for f in framings]))
    assert [by_name[s["name"]] for s in got] == ["bust", "full", "unknown", "bust", "full", "bust"]
    record_usage(path, "r", _log(tmp_path, "r.txt", f"{NAMES[0]}\n{NAMES[1]}\n"))
    got = sample(path, balance="framing", seed=1)
    assert got[0]["name"] == NAMES[2]  # within its group, the unseen bust comes first
    assert {s["name"] for s in sample(path, balance="character")} == set(NAMES)


def test_kohya_repeats():
    sampled = [{"name": "a", "weight": 1.0}, {"name": "b", "weight": 0.5}, {"name": "c", "weight": 1 / 3},
               {"name": "d", "weight": 0.01}]
    assert kohya_repeats(sampled, 10) == {10: ["a"], 5: ["b"], 3: ["c"], 1: ["d"]}
    assert kohya_repeats([{"name": "a", "weight": 1.0}, {"name": "b", "weight": 1.0}], 4) == {4: ["a", "b"]}
    assert kohya_repeats([], 10) == {}
    with pytest.raises(UsageError):
        kohya_repeats(sampled, 0)


def test_errors(index: Path, tmp_path: Path):
    log = _log(tmp_path, "a.txt", NAMES[0])
    record_usage(index, "a", log)
    with pytest.raises(UsageError, match="already recorded"):
        record_usage(index, "a", log)
    with pytest.raises(UsageError, match="parent run 'nope' is not recorded"):
        record_usage(index, "b", log, parent="nope")
    for bad in ("", "a b", "../x", "-x"):
        with pytest.raises(UsageError, match="run name"):
            record_usage(index, bad, log)
    with pytest.raises(UsageError, match="missing.log"):
        record_usage(index, "b", tmp_path / "missing.log")
    with pytest.raises(UsageError, match="run 'nope' is not recorded"):
        times_seen(index, "nope")
    assert [r["name"] for r in usage_stats(index)["runs"]] == ["a"]  # the failed calls recorded nothing

    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database\n" * 100)
    for call in (lambda: times_seen(corrupt), lambda: write_index(corrupt, []),
                 lambda: record_usage(corrupt, "a", log)):
        with pytest.raises(UsageError, match="corrupt.sqlite: not an SQLite index"):
            call()
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(index.read_bytes()[:200])
    with pytest.raises(UsageError, match="truncated.sqlite"):
        usage_stats(truncated)
    with pytest.raises(UsageError, match="no dataset index"):
        sample(tmp_path / "absent.sqlite")
    with sqlite3.connect(index) as con:
        con.execute("PRAGMA user_version = 7")
    con.close()
    with pytest.raises(UsageError, match="schema version 7"):
        write_index(index, [])
    with pytest.raises(UsageError, match="dup"):
        write_index(tmp_path / "dup.sqlite", [_item(NAMES[0]), _item(NAMES[0])])
