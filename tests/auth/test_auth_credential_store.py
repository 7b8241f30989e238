"""A run's CommCare credential in run_credentials: encrypted, round-tripped, replaced, deleted."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from cryptography.fernet import Fernet

from data_explorer.loaders.commcare.credentials import ApiKeyCredential, BearerCredential, OAuthCredential
from data_explorer.pipelines.status import RunStatus
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.credentials import (
    CredentialNotFound,
    aload_run_credential,
    astore_run_credential,
    delete_run_credential,
    load_run_credential,
    store_run_credential,
)
from data_explorer.warehouse.secrets import SecretBox, SecretError

CONTROL = "auth_store_ctl"
API_KEY = "k-" + uuid.uuid4().hex
ACCESS = "at-" + uuid.uuid4().hex
REFRESH = "rt-" + uuid.uuid4().hex
CLIENT_SECRET = "cs-" + uuid.uuid4().hex

CREDENTIALS = [
    ApiKeyCredential("demo@example.org", API_KEY),
    BearerCredential(ACCESS, expires_at=time.time() + 600, username="demo@example.org"),
    OAuthCredential(ACCESS, REFRESH, time.time() + 900, "explorer", CLIENT_SECRET, "demo@example.org"),
    OAuthCredential("", REFRESH, None, "explorer"),  # only a refresh token so far
]


@pytest.fixture
def control(conn):
    ensure_control_tables(conn, CONTROL)
    return CONTROL


def _run(conn, control: str) -> str:
    from data_explorer.warehouse.runs import insert_run

    run_id = str(uuid.uuid4())
    insert_run(conn, control, RunStatus(run_id, f"store-{run_id[:8]}", "commcare", "full"))
    return run_id


def _same(a, b) -> bool:
    if getattr(a, "expires_at", None) is not None:
        assert abs(a.expires_at - b.expires_at) < 0.001
        a, b = type(a)(**{**a.__dict__, "expires_at": None}), type(b)(**{**b.__dict__, "expires_at": None})
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("credential", CREDENTIALS, ids=["api_key", "bearer", "oauth", "refresh_only"])
def test_credentials_round_trip(conn, control, box, credential):
    run_id = _run(conn, control)
    store_run_credential(conn, control, run_id, credential, box)
    loaded = load_run_credential(conn, control, run_id, box)
    assert _same(loaded, credential)
    assert "stored with the run" in loaded.describe()


def test_nothing_readable_in_the_table(conn, control, box):
    for credential in CREDENTIALS:
        store_run_credential(conn, control, _run(conn, control), credential, box)
    rows = conn.execute(f"SELECT * FROM {control}.run_credentials").fetchall()
    dump = json.dumps(rows, default=str)
    assert len(rows) >= 4
    for secret in (API_KEY, ACCESS, REFRESH, CLIENT_SECRET, "explorer"):
        assert secret not in dump, secret
    kinds = conn.execute(
        f"SELECT kind, username, refresh_secret IS NOT NULL FROM {control}.run_credentials ORDER BY updated_at"
    ).fetchall()
    assert [k for k, _, _ in kinds[-4:]] == ["api_key", "oauth", "oauth", "oauth"]
    assert [r for _, _, r in kinds[-4:]] == [False, False, True, True]


def test_another_key_cannot_decrypt(conn, control, box):
    run_id = _run(conn, control)
    store_run_credential(conn, control, run_id, CREDENTIALS[0], box)
    with pytest.raises(SecretError, match="DATA_EXPLORER_SECRET_KEY"):
        load_run_credential(conn, control, run_id, SecretBox(Fernet.generate_key()))


def test_storing_again_replaces_and_delete_forgets(conn, control, box):
    run_id = _run(conn, control)
    store_run_credential(conn, control, run_id, CREDENTIALS[2], box)
    newer = OAuthCredential("at-newer", "rt-newer", time.time() + 900, "explorer", CLIENT_SECRET)
    store_run_credential(conn, control, run_id, newer, box)
    assert load_run_credential(conn, control, run_id, box).access_token == "at-newer"
    assert conn.execute(f"SELECT count(*) FROM {control}.run_credentials WHERE run_id = %s", (run_id,)).fetchone()[0] == 1
    assert delete_run_credential(conn, control, run_id) is True
    assert delete_run_credential(conn, control, run_id) is False
    with pytest.raises(CredentialNotFound):
        load_run_credential(conn, control, run_id, box)


def test_a_credential_needs_its_run_and_goes_with_it(conn, control, box):
    import psycopg

    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        store_run_credential(conn, control, str(uuid.uuid4()), CREDENTIALS[0], box)
    run_id = _run(conn, control)
    store_run_credential(conn, control, run_id, CREDENTIALS[0], box)
    conn.execute(f"DELETE FROM {control}.runs WHERE run_id = %s", (run_id,))
    with pytest.raises(CredentialNotFound):
        load_run_credential(conn, control, run_id, box)


@pytest.mark.anyio
async def test_async_variants(database_url, conn, control, box):
    import psycopg

    run_id = _run(conn, control)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as aconn:
        await astore_run_credential(aconn, control, run_id, CREDENTIALS[2], box)
        assert _same(await aload_run_credential(aconn, control, run_id, box), CREDENTIALS[2])
    assert _same(load_run_credential(conn, control, run_id, box), CREDENTIALS[2])


def test_not_a_credential_is_refused(conn, control, box):
    with pytest.raises(TypeError):
        store_run_credential(conn, control, _run(conn, control), "ApiKey a:b", box)
