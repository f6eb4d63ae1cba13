"""Ticket upserts through real gspread over real HTTP to a local fake Sheets API, the
outbox when the sheet cannot be reached, and its replay."""
import json

import pytest

from kirinuki.core.config import SheetColumns, SheetsParams
from kirinuki.core.secrets import CREDENTIALS_ENV
from kirinuki.publish.tickets import (Ticket, check_ticket, plan_upsert, publish_tickets,
                              read_outbox)

from fake_sheets import FakeGoogle, service_account

HEADER = list(SheetColumns().model_dump().values())
COL = {name: i for i, name in enumerate(SheetColumns().model_dump())}
DEFAULTS = {"priority": "中", "status": "着手前"}


@pytest.fixture
def google(tmp_path):
    holder = {}
    info, public = service_account("placeholder")
    fake = FakeGoogle(public, {"tickets": [["ID", "優先度", "ステータス", "登録日時", "更新日時", "概要", "詳細"],
                                           ["QCA-001", "高", "完了", "2025-01-01 09:00:00", "2025-01-02 09:00:00",
                                            "first batch", ""]]})
    info["token_uri"] = f"{fake.url}/token"
    creds = tmp_path / "secrets" / "sa.json"  # outside any git repository
    creds.parent.mkdir()
    creds.write_text(json.dumps(info))
    holder.update(fake=fake, env={CREDENTIALS_ENV: str(creds)}, params=SheetsParams(
        spreadsheet_key="sheet-key", api_base=fake.url, backoff_s=0.01, retries=3))
    yield holder
    fake.close()


def test_plan_upsert_updates_in_place_and_appends_new():
    values = [HEADER[:3], ["QCA-001", "高", "完了"]]
    plan = plan_upsert(values, [
        Ticket("QCA-001", at="t1", status="対応中"),
        Ticket("QCC-011", at="t2", summary="aoki ep.3", depends_on=("QCA-001",)),
        Ticket("QCC-011", at="t3", status="完了"),
    ], SheetColumns(), DEFAULTS)
    assert [r for r, _ in plan.updates] == [1, 2]  # header gained columns; QCA-001 rewritten
    assert plan.updates[0][1] == HEADER
    old = plan.updates[1][1]
    assert old[COL["status"]] == "対応中" and old[COL["priority"]] == "高" and old[COL["updated"]] == "t1"
    [new] = plan.appends  # the second update of QCC-011 lands on the row the first created
    assert new[COL["registered"]] == "t2" and new[COL["updated"]] == "t3" and new[COL["status"]] == "完了"
    assert new[COL["priority"]] == "中" and new[COL["depends_on"]] == "QCA-001"
    [only] = plan_upsert([], [Ticket("QCC-012", at="t")], SheetColumns(), DEFAULTS).appends[1:]
    assert only[COL["status"]] == "着手前" and only[COL["priority"]] == "中"  # a new ticket starts as configured


def test_plan_upsert_is_idempotent():
    t = Ticket("QCC-011", at="t1", status="完了", details="x")
    first = plan_upsert([], [t], SheetColumns(), DEFAULTS)
    assert first.appends[0] == HEADER and first.updates == []
    again = plan_upsert(first.appends, [t], SheetColumns(), DEFAULTS)
    assert again.updates == [] and again.appends == []


def test_names_are_checked():
    p = SheetsParams()
    with pytest.raises(ValueError, match="priority 'urgent' is not one of 最高, 高, 中, 低"):
        check_ticket(Ticket("QCC-011", "t", priority="urgent"), p)
    with pytest.raises(ValueError, match="cannot depend on itself"):
        check_ticket(Ticket("QCC-011", "t", depends_on=("QCC-011",)), p)


def test_round_trip_through_gspread(google, tmp_path):
    fake, outbox = google["fake"], tmp_path / "outbox.jsonl"
    ticket = Ticket("QCC-011", at="2025-11-21 14:00:00", status="完了", priority="最高", summary="aoki ep.3",
                    details="24 cut-outs: A 3 / B 5", dashboard="http://127.0.0.1:8765/tracker/QCC-011/",
                    depends_on=("QCA-001",))
    r = publish_tickets([ticket, Ticket("QCA-001", at="2025-11-21 14:00:00", status="対応中")],
                        google["params"], outbox, env=google["env"])
    assert r.sent == 2 and r.queued == 0, r.message
    grid = fake.sheets["tickets"]
    assert grid[0] == HEADER  # missing columns added to the user's header
    assert grid[1][:5] == ["QCA-001", "高", "対応中", "2025-01-01 09:00:00", "2025-11-21 14:00:00"]
    assert grid[2] == ["QCC-011", "最高", "完了", "2025-11-21 14:00:00", "2025-11-21 14:00:00", "aoki ep.3",
                       "24 cut-outs: A 3 / B 5", "http://127.0.0.1:8765/tracker/QCC-011/", "QCA-001"]
    api = [c for c in fake.calls if "values" in c[1]]
    assert [m for m, _ in api] == ["GET", "POST", "POST"]  # read once, one batchUpdate, one append
    assert api[1][1].endswith("values:batchUpdate") and api[2][1].endswith(":append")

    fake.calls.clear()
    r = publish_tickets([ticket], google["params"], outbox, env=google["env"])  # same update again
    assert [c for c in fake.calls if c[0] == "POST"] == [] and len(grid) == 3


def test_rate_limits_are_retried(google, tmp_path):
    fake = google["fake"]
    fake.fail_next = [429, 503, 429]  # three failures, three retries allowed
    r = publish_tickets([Ticket("QCC-012", at="t", status="着手前")], google["params"], tmp_path / "o.jsonl",
                        env=google["env"])
    assert r.sent == 1, r.message
    assert fake.calls[:4] == [("GET", "/v4/spreadsheets/sheet-key")] * 4
    assert fake.sheets["tickets"][-1][0] == "QCC-012"


def test_outbox_keeps_updates_and_next_publish_replays_them(google, tmp_path):
    fake, outbox = google["fake"], tmp_path / "outbox.jsonl"
    first = Ticket("QCC-020", at="2025-11-21 10:00:00", status="対応中", depends_on=("QCA-001",))

    r = publish_tickets([first], google["params"], outbox, env={})  # no credentials
    assert r.queued == 1 and "no Google credentials" in r.message and str(outbox) in r.message
    assert "next publish" in r.message

    fake.fail_next = [503] * 10  # Google down longer than the retries
    second = Ticket("QCC-020", at="2025-11-21 11:00:00", status="完了")
    r = publish_tickets([second], google["params"], outbox, env=google["env"])
    assert r.queued == 2 and "503" in r.message
    assert read_outbox(outbox) == [first, second]
    assert not any(row and row[0] == "QCC-020" for row in fake.sheets["tickets"])

    fake.fail_next = []
    r = publish_tickets([], google["params"], outbox, env=google["env"])
    assert (r.sent, r.replayed, r.queued) == (2, 2, 0) and "replayed from the outbox" in r.message
    assert not outbox.exists()
    row = fake.sheets["tickets"][-1]
    assert row[0] == "QCC-020" and row[3] == "2025-11-21 10:00:00" and row[4] == "2025-11-21 11:00:00"
    assert row[2] == "完了" and row[COL["depends_on"]] == "QCA-001"


def test_unreachable_google_goes_to_outbox(google, tmp_path):
    params = google["params"].model_copy(update={"api_base": "http://127.0.0.1:9", "retries": 1})
    r = publish_tickets([Ticket("QCC-030", at="t")], params, tmp_path / "o.jsonl", env=google["env"])
    assert r.queued == 1 and "kept in" in r.message


def test_credentials_inside_a_repository_are_refused(google, tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sa.json").write_text("{}")
    r = publish_tickets([Ticket("QCC-031", at="t")], google["params"], tmp_path / "o.jsonl",
                        env={CREDENTIALS_ENV: str(repo / "sa.json")})
    assert r.queued == 1 and "inside a git repository" in r.message
