"""The Google Sheets client behind tickets.py: service-account credentials, an HTTP session
with retries, and one read + one batchUpdate + one append per publish. Needs gspread and
google-auth (the `publish` extra); tickets.py imports it only when there is a sheet to write.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Mapping

import gspread
import requests
from google.auth.exceptions import GoogleAuthError, TransportError
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from gspread.utils import ValueInputOption, rowcol_to_a1

from kirinuki.core.config import GOOGLE_SHEETS_API, SheetsParams
from kirinuki.core.secrets import CREDENTIALS_ENV, CredentialsError, parse_credentials
from kirinuki.publish.tickets import SheetPlan, SheetsUnavailable, Ticket, plan_upsert

SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# what a failed publish raises besides SheetsUnavailable: the updates then wait in the outbox
ERRORS = (gspread.exceptions.GSpreadException, requests.RequestException, GoogleAuthError)


def _in_git_repo(path: Path) -> bool:
    return any((d / ".git").exists() for d in path.resolve().parents)


def load_credentials(params: SheetsParams, env: Mapping[str, str] = os.environ):
    """Service-account credentials from the environment; raises SheetsUnavailable."""
    try:  # a path, inline JSON, quoted JSON or base64 JSON; errors never show the value
        info, path = parse_credentials(env.get(CREDENTIALS_ENV, ""))
    except CredentialsError as e:
        raise SheetsUnavailable(str(e)) from None
    if path is not None and _in_git_repo(path):
        raise SheetsUnavailable(f"{CREDENTIALS_ENV}: {path} is inside a git repository; keep secrets outside it")
    try:
        if params.token_uri:
            info["token_uri"] = params.token_uri
        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except (ValueError, KeyError, TypeError) as e:  # message names the missing field, never its value
        raise SheetsUnavailable(f"{CREDENTIALS_ENV}: not a usable service-account JSON ({type(e).__name__})") from None


class SheetsSession(AuthorizedSession):
    """An authorised requests session that sends Sheets API calls to params.api_base and
    retries 429/5xx answers and connection errors with exponential back-off."""

    def __init__(self, credentials, params: SheetsParams, sleep: Callable[[float], None] = time.sleep):
        super().__init__(credentials)
        self.params, self.sleep = params, sleep

    def request(self, method, url, *args, **kwargs):
        p = self.params
        if url.startswith(GOOGLE_SHEETS_API):
            url = p.api_base.rstrip("/") + url[len(GOOGLE_SHEETS_API):]
        kwargs["timeout"] = kwargs.get("timeout") or p.timeout_s
        for attempt in range(p.retries + 1):
            last = attempt == p.retries
            try:
                response = super().request(method, url, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout, TransportError):
                if last:
                    raise
                response = None
            if response is not None and (response.status_code not in RETRY_STATUS or last):
                return response
            retry_after = response.headers.get("Retry-After", "") if response is not None else ""
            wait = float(retry_after) if retry_after.isdigit() else p.backoff_s * 2 ** attempt
            self.sleep(min(wait, p.max_backoff_s))


def send_tickets(tickets: list[Ticket], params: SheetsParams, credentials,
                 sleep: Callable[[float], None] = time.sleep) -> SheetPlan:
    """Read the worksheet, then write the planned rows: one batchUpdate, one append."""
    client = gspread.Client(auth=None, session=SheetsSession(credentials, params, sleep))
    sheet = client.open_by_key(params.spreadsheet_key).worksheet(params.worksheet)
    defaults = {"priority": params.default_priority, "status": params.statuses[0]}
    plan = plan_upsert(sheet.get_all_values(), tickets, params.columns, defaults)
    if plan.updates:
        sheet.batch_update([{"range": f"{rowcol_to_a1(r, 1)}:{rowcol_to_a1(r, len(row))}", "values": [row]}
                            for r, row in plan.updates], value_input_option=ValueInputOption.raw)
    if plan.appends:
        sheet.append_rows(plan.appends, value_input_option=ValueInputOption.raw, table_range="A1")
    return plan
