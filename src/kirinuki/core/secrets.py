"""Secrets: where they come from, how credentials are read, and the one redaction path.

Every message, log line, record and report that may carry text from outside (an error of
a web service, a user's summary, an exception) goes through `redact` before it is printed,
written or sent: the values of the secret-bearing environment variables (and what can be
derived from them: the private key of a service-account JSON, its lines, the basic-auth
token of the dashboard login) and anything shaped like a private key or an access token
become `[redacted]`.

Google credentials ($KIRINUKI_GOOGLE_CREDENTIALS) are taken as a path to a service-account
JSON file, the JSON itself, the JSON wrapped in quotes (as `docker --env-file` keeps them),
or the JSON in base64; anything else is a one-line error that shows none of the value.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

CREDENTIALS_ENV = "KIRINUKI_GOOGLE_CREDENTIALS"
PUSHOVER_TOKEN_ENV, PUSHOVER_USER_ENV = "KIRINUKI_PUSHOVER_TOKEN", "KIRINUKI_PUSHOVER_USER"
DASHBOARD_USER_ENV, DASHBOARD_PASSWORD_ENV = "KIRINUKI_DASHBOARD_USER", "KIRINUKI_DASHBOARD_PASSWORD"
GITHUB_TOKEN_ENV = "GITHUB_TOKEN"
# every variable whose value must never be shown (the dashboard user name is not a secret)
SECRET_ENVS = (CREDENTIALS_ENV, PUSHOVER_TOKEN_ENV, PUSHOVER_USER_ENV, DASHBOARD_PASSWORD_ENV, GITHUB_TOKEN_ENV)
REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values are not searched for (they would blank out ordinary words)

_PRIVATE_KEY = re.compile(  # PEM, raw or JSON-escaped (\n), also cut short
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S)
_TOKENS = [
    re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{20,})"),  # GitHub
    re.compile(r"\bya29\.[A-Za-z0-9_.\-]{10,}"),  # Google OAuth access token
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT (signed assertion)
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),  # Google API key
]
# a secret that follows its name: Authorization headers, key=value, "key": "value"
_NAMED = re.compile(
    r"(?i)(\bauthorization\s*[:=]\s*(?:basic|bearer|token)\s+"
    r"|[\"']?\b(?:access_token|refresh_token|id_token|client_secret|private_key_id|private_key|api_key|apikey"
    r"|password|passwd|token|user_key|assertion)[\"']?\s*[:=]\s*[\"']?)"
    r"(?!\[redacted\])[^\s\"'&,;}]+")


class CredentialsError(ValueError):
    """Credentials that cannot be used; str() is one line and never holds the value."""


# --- credentials ------------------------------------------------------------------------------

def _unquote(raw: str) -> str:
    """Strip one pair of surrounding quotes, as an env file may keep them."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        inner = raw[1:-1]
        if raw[0] == '"' and '\\"' in inner:  # a JSON string of the JSON: decode it once
            try:
                decoded = json.loads(raw)
                if isinstance(decoded, str):
                    return decoded.strip()
            except ValueError:
                pass
        return inner.strip()
    return raw


def _is_file(raw: str) -> bool:
    try:
        return Path(raw).expanduser().is_file()
    except (OSError, ValueError):  # too long for a path, a NUL byte, ...
        return False


def _from_base64(raw: str) -> Optional[str]:
    compact = "".join(raw.split())
    if len(compact) < 16 or not re.fullmatch(r"[A-Za-z0-9+/_\-]+=*", compact):
        return None
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            text = decode(compact + "=" * (-len(compact) % 4)).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        if text.lstrip().startswith("{"):
            return text
    return None


def credentials_text(raw: str) -> tuple[str, Optional[Path]]:
    """The JSON text of Google credentials given as a path, JSON, quoted JSON or base64 JSON,
    and the file it came from (None when inline). Raises CredentialsError (no value shown)."""
    value = _unquote(raw.strip())
    if not value:
        raise CredentialsError(f"no Google credentials (set {CREDENTIALS_ENV} to a service-account JSON file)")
    if value.startswith("{"):
        return value, None
    if _is_file(value):
        path = Path(value).expanduser()
        try:
            return path.read_text(encoding="utf-8"), path
        except (OSError, UnicodeDecodeError) as e:
            raise CredentialsError(f"{CREDENTIALS_ENV}: {path}: cannot read ({type(e).__name__})") from None
    decoded = _from_base64(value)
    if decoded is not None:
        return decoded, None
    if value.lower().endswith(".json") and "\n" not in value and len(value) < 4096:  # a path to a missing file
        raise CredentialsError(f"{CREDENTIALS_ENV}: {Path(value).expanduser()}: no such file")
    raise CredentialsError(f"{CREDENTIALS_ENV}: not a path to a file, inline JSON, quoted JSON or base64 JSON "
                           f"({len(value)} characters; the value is not shown)")


def parse_credentials(raw: str) -> tuple[dict, Optional[Path]]:
    """The service-account info (a dict) of `credentials_text(raw)`, and its file (None: inline)."""
    text, path = credentials_text(raw)
    try:
        info = json.loads(text, strict=False)  # strict=False: a key pasted with real line breaks
    except ValueError as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise CredentialsError(f"{CREDENTIALS_ENV}: {'file ' + str(path) if path else 'inline JSON'} "
                               f"does not parse as JSON{where}") from None
    if not isinstance(info, dict):
        raise CredentialsError(f"{CREDENTIALS_ENV}: expected a JSON object, got {type(info).__name__}")
    return info, path


# --- what to redact ---------------------------------------------------------------------------

def _key_parts(info: dict) -> set[str]:
    """The secret fields of a service-account JSON, in the forms they may be printed."""
    out = set()
    for field in ("private_key", "private_key_id", "client_secret", "refresh_token"):
        value = info.get(field)
        if isinstance(value, str) and value.strip():
            out |= {value, value.strip(), json.dumps(value)[1:-1]}
            if field == "private_key":  # any line of the key body on its own
                out |= {line.strip() for line in value.splitlines() if len(line.strip()) >= 16
                        and "PRIVATE KEY" not in line}
    return out


def _file_stamp(raw: str) -> Optional[float]:
    value = _unquote(raw.strip())
    if value.startswith("{") or not _is_file(value):
        return None
    try:
        return Path(value).expanduser().stat().st_mtime
    except OSError:
        return None


@functools.lru_cache(maxsize=32)
def _secrets_of(values: tuple[tuple[str, str], ...], stamp: Optional[float]) -> tuple[str, ...]:
    env = dict(values)
    found: set[str] = set()
    for name in SECRET_ENVS:
        raw = env.get(name, "")
        if not raw.strip():
            continue
        if name == CREDENTIALS_ENV:
            if stamp is None:  # inline: the value itself in every spelling it may come back in
                found |= {raw, raw.strip(), _unquote(raw.strip())}
            try:
                text, _ = credentials_text(raw)
                found.add(text.strip())
                info = json.loads(text, strict=False)
                if isinstance(info, dict):
                    found |= _key_parts(info)
            except (CredentialsError, ValueError):
                pass
        else:
            found |= {raw, raw.strip()}
    user, password = env.get(DASHBOARD_USER_ENV, ""), env.get(DASHBOARD_PASSWORD_ENV, "")
    if password:
        found.add(base64.b64encode(f"{user}:{password}".encode()).decode())
    return tuple(sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True))


def secret_values(env: Optional[Mapping[str, str]] = None) -> tuple[str, ...]:
    """Every secret string to hide, longest first, from `env` and os.environ."""
    names = SECRET_ENVS + (DASHBOARD_USER_ENV,)
    found = ()
    for source in ([os.environ] if env is None or env is os.environ else [env, os.environ]):
        values = tuple((n, source[n]) for n in names if source.get(n))
        if values:
            found += _secrets_of(values, _file_stamp(source.get(CREDENTIALS_ENV, "")))
    return tuple(sorted(set(found), key=len, reverse=True))


def redact(text: Any, env: Optional[Mapping[str, str]] = None) -> str:
    """`text` with every secret value and private-key/token pattern replaced by [redacted]."""
    text = text if isinstance(text, str) else str(text)
    for secret in secret_values(env):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _PRIVATE_KEY.sub(REDACTED, text)
    for pattern in _TOKENS:
        text = pattern.sub(REDACTED, text)
    return _NAMED.sub(lambda m: m.group(1) + REDACTED, text)


def redact_obj(obj: Any, env: Optional[Mapping[str, str]] = None) -> Any:
    """A JSON-like value (dicts, lists, strings) with `redact` applied to every string in it."""
    if isinstance(obj, str):
        return redact(obj, env)
    if isinstance(obj, dict):
        return {k: redact_obj(v, env) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v, env) for v in obj)
    return obj
