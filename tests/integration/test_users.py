"""Users: active and deactivated mobile workers and web users, loaded over HTTP into PostgreSQL, so that
every form's submitter and every case's owner resolves to a published user."""

from __future__ import annotations

from psycopg import sql

from data_explorer.loaders.commcare import sources
from data_explorer.loaders.commcare.users import USER_COLUMNS


def _rows(conn, space, query: str, *args):
    return conn.execute(sql.SQL(query).format(schema=sql.Identifier(space.names.schema)), args).fetchall()


def test_every_submitter_and_case_owner_is_a_published_user(space_factory, conn):
    space = space_factory(cases=240, forms=240, users=4, deactivated_users=3, web_users=2)
    status = space.run(COMMCARE_USER_PAGE_SIZE=2)  # several pages of each list
    assert status.phase == "Succeeded", status.error
    state = space.sim.state()["domains"][space.domain]
    by_kind = dict(_rows(conn, space, "SELECT user_type || ':' || is_active, count(*) FROM {schema}.users GROUP BY 1"))
    assert by_kind == {"mobile:true": 4, "mobile:false": 3, "web:true": state["web_users"]}
    assert state["web_users"] == 3  # the two synthetic web users and the API user, a member of the space
    unresolved_forms = _rows(conn, space, "SELECT count(*) FROM {schema}.forms f"
                                          " LEFT JOIN {schema}.users u USING (user_id) WHERE u.user_id IS NULL")
    unresolved_owners = _rows(conn, space, "SELECT count(*) FROM {schema}.cases c"
                                           " LEFT JOIN {schema}.users u ON u.user_id = c.owner_id WHERE u.user_id IS NULL")
    assert unresolved_forms == [(0,)] and unresolved_owners == [(0,)]
    # the test means something only if deactivated workers and web users did submit and own
    submitters = dict(_rows(conn, space, "SELECT u.user_type || ':' || u.is_active, count(*) FROM {schema}.forms f"
                                         " JOIN {schema}.users u USING (user_id) GROUP BY 1"))
    owners = dict(_rows(conn, space, "SELECT u.user_type || ':' || u.is_active, count(*) FROM {schema}.cases c"
                                     " JOIN {schema}.users u ON u.user_id = c.owner_id GROUP BY 1"))
    assert {"mobile:true", "mobile:false", "web:true"} <= set(submitters) & set(owners)
    roles = _rows(conn, space, "SELECT role FROM {schema}.users WHERE user_type = 'web' ORDER BY role")
    assert all(role for (role,) in roles) and not _rows(conn, space, "SELECT 1 FROM {schema}.users"
                                                                     " WHERE user_type = 'mobile' AND role IS NOT NULL")
    comment = conn.execute("SELECT col_description(%s::regclass, 3)", (f"{space.names.schema}.users",)).fetchone()[0]
    assert "deactivated" in comment  # is_active is described where agents look


class _DeactivatesBetweenLists(sources.UsersSource):
    """The real users source, with one worker it has already read deactivated before it reads the
    deactivated list: as an admin might while a run is under way."""

    simulator = None
    deactivated: list[str] = []

    def batches(self, cursor_state):
        active_read, victim = 0, None
        for batch in super().batches(cursor_state):
            yield batch
            rows = batch.rows["users"]
            if victim is None and rows and all(r[USER_COLUMNS.index("is_active")] for r in rows):
                active_read += len(rows)
                if active_read == batch.total:  # the last page of the active list
                    victim = rows[0][0]
                    users = self.simulator.runtime.dataset.spaces[self.domain].users
                    assert self.simulator.call(users.deactivate, victim)
                    type(self).deactivated.append(victim)


def test_a_worker_deactivated_between_the_lists_is_kept_once_as_the_later_list_shows(space_factory, conn, monkeypatch):
    space = space_factory(cases=64, forms=32, users=5, deactivated_users=1)
    _DeactivatesBetweenLists.simulator, _DeactivatesBetweenLists.deactivated = space.sim, []
    monkeypatch.setitem(sources.LOADERS, "commcare.users", _DeactivatesBetweenLists)
    status = space.run(COMMCARE_USER_PAGE_SIZE=2)
    assert status.phase == "Succeeded", status.error
    [victim] = _DeactivatesBetweenLists.deactivated
    assert status.phases["load"]["users"]["fetched"] == 5 + 2 + 1  # served by both lists: read twice
    assert _rows(conn, space, "SELECT is_active FROM {schema}.users WHERE user_id = %s", victim) == [(False,)]
    assert space.count(conn, "users") == 5 + 1 + 1  # every user once: workers, the API user
    assert space.count(conn, "users") == space.expected()["users"]
