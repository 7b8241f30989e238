"""Run locks cannot be blocked by a project space crafted to share a victim's lock key."""

from __future__ import annotations

import pytest

from data_explorer.warehouse.locks import tenant_lock

pytestmark = pytest.mark.security


def test_a_name_sharing_the_victims_32_bit_hash_does_not_take_its_lock(db, conn):
    seen: dict[int, str] = {}
    victim = attacker = None
    for key, domain in conn.execute("SELECT hashtext('sp-' || g), 'sp-' || g FROM generate_series(1, 300000) g"):
        if key in seen:
            victim, attacker = seen[key], domain
            break
        seen[key] = domain
    assert victim is not None  # PostgreSQL's 32-bit hashtext collides within a few hundred thousand names
    with db.connect(autocommit=True) as other:
        with tenant_lock(other, attacker) as got_attacker, tenant_lock(conn, victim) as got_victim:
            assert got_attacker and got_victim
