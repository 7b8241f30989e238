"""A run's CommCare credential, kept encrypted in ``<control>.run_credentials`` for its runner.

The gateway stores the caller's credential when it creates a run; the runner
loads it, and stores it again whenever it refreshes an OAuth token, so a run
resumed elsewhere starts from the newest tokens. Every secret is encrypted
with the installation's ``SecretBox`` (Fernet): the table holds the kind, the
user name and the expiry in clear, and nothing that can call CommCare.

- ``secret``: the API key, or the OAuth access token (may be empty when only a refresh token is known)
- ``refresh_secret``: JSON ``{"refresh_token", "client_id", "client_secret"}``, only for a refreshable OAuth
  credential; a pass-through access token has none
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from data_explorer.loaders.commcare.credentials import (
    ApiKeyCredential,
    BearerCredential,
    Credential,
    OAuthCredential,
)
from data_explorer.warehouse.secrets import SecretBox

STORED = "stored with the run"  # the ``source`` of a loaded credential, for error messages

_UPSERT = """
    INSERT INTO {s}.run_credentials (run_id, kind, username, secret, refresh_secret, expires_at, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s, now())
    ON CONFLICT (run_id) DO UPDATE SET kind = EXCLUDED.kind, username = EXCLUDED.username,
        secret = EXCLUDED.secret, refresh_secret = EXCLUDED.refresh_secret, expires_at = EXCLUDED.expires_at,
        updated_at = now()
"""
_SELECT = "SELECT kind, username, secret, refresh_secret, expires_at FROM {s}.run_credentials WHERE run_id = %s"
_DELETE = "DELETE FROM {s}.run_credentials WHERE run_id = %s"


class CredentialNotFound(LookupError):
    """The run has no stored credential (never stored, or deleted when the run ended)."""


def _row(run_id: str, credential: Credential, box: SecretBox) -> tuple[Any, ...]:
    if isinstance(credential, ApiKeyCredential):
        return (run_id, "api_key", credential.username, box.encrypt(credential.api_key), None, None)
    if isinstance(credential, BearerCredential):
        return (run_id, "oauth", credential.username, box.encrypt(credential.token), None, _when(credential.expires_at))
    if isinstance(credential, OAuthCredential):
        refresh = json.dumps({
            "refresh_token": credential.refresh_token,
            "client_id": credential.client_id,
            "client_secret": credential.client_secret,
        })
        return (run_id, "oauth", credential.username, box.encrypt(credential.access_token), box.encrypt(refresh),
                _when(credential.expires_at))
    raise TypeError(f"not a CommCare credential: {type(credential).__name__}")


def _when(expires_at: float | None) -> datetime | None:
    return None if expires_at is None else datetime.fromtimestamp(expires_at, timezone.utc)


def _credential(row: tuple[Any, ...], box: SecretBox) -> Credential:
    kind, username, secret, refresh_secret, expires_at = row
    expires = expires_at.timestamp() if expires_at is not None else None
    if kind == "api_key":
        return ApiKeyCredential(username or "", box.decrypt(secret), source=STORED)
    if refresh_secret is None:
        return BearerCredential(box.decrypt(secret), expires, username, source=STORED)
    refresh = json.loads(box.decrypt(refresh_secret))
    return OAuthCredential(
        box.decrypt(secret), refresh["refresh_token"], expires, refresh.get("client_id"), refresh.get("client_secret"),
        username, source=STORED,
    )


def store_run_credential(
    conn: psycopg.Connection, control: str, run_id: str, credential: Credential, box: SecretBox
) -> None:
    """Keep (or replace) the run's credential, encrypted. The run's row must exist."""
    conn.execute(sql.SQL(_UPSERT).format(s=sql.Identifier(control)), _row(str(run_id), credential, box))


def load_run_credential(conn: psycopg.Connection, control: str, run_id: str, box: SecretBox) -> Credential:
    """The run's credential, decrypted; CredentialNotFound when there is none, SecretError when the key changed."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(sql.SQL(_SELECT).format(s=sql.Identifier(control)), (str(run_id),)).fetchone()
    if row is None:
        raise CredentialNotFound(f"run {run_id} has no stored CommCare credential")
    return _credential(row, box)


def delete_run_credential(conn: psycopg.Connection, control: str, run_id: str) -> bool:
    """Forget the run's credential (when the run ends); True when there was one."""
    return conn.execute(sql.SQL(_DELETE).format(s=sql.Identifier(control)), (str(run_id),)).rowcount > 0


async def astore_run_credential(
    aconn: psycopg.AsyncConnection, control: str, run_id: str, credential: Credential, box: SecretBox
) -> None:
    """``store_run_credential`` on an async connection."""
    await aconn.execute(sql.SQL(_UPSERT).format(s=sql.Identifier(control)), _row(str(run_id), credential, box))


async def aload_run_credential(aconn: psycopg.AsyncConnection, control: str, run_id: str, box: SecretBox) -> Credential:
    """``load_run_credential`` on an async connection."""
    async with aconn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(sql.SQL(_SELECT).format(s=sql.Identifier(control)), (str(run_id),))
        row = await cur.fetchone()
    if row is None:
        raise CredentialNotFound(f"run {run_id} has no stored CommCare credential")
    return _credential(row, box)


def purge_finished_credentials(conn: psycopg.Connection, control: str) -> int:
    """Delete the credentials of every run that has ended (whatever stopped its runner's own clean-up)."""
    cur = conn.execute(
        sql.SQL(
            "DELETE FROM {0}.run_credentials c USING {0}.runs r WHERE r.run_id = c.run_id"
            " AND r.phase IN ('Succeeded', 'Failed', 'Cancelled')"
        ).format(sql.Identifier(control))
    )
    return cur.rowcount
