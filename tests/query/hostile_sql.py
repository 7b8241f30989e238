"""The hostile corpus: statements an agent (or whoever speaks through one) might send to break out.

Every statement is run as tenant A, twice:

- with the SQL guard on, each must be refused by the guard, by the rule named here;
- with the guard OFF, PostgreSQL (the session the executor gives it) must hold:
  ``off`` says what happens then. "refused": an error (PostgreSQL's, or the
  executor's for a COPY result); "timeout": stopped by statement_timeout;
  "ok": it runs, and the entry's note says why that is harmless.

Placeholders (see ``QueryWorld.placeholders``): {own}, {own_raw}, {own_build},
{own_reader}, {own_writer} are tenant A's; {other}, {other_upper}, {other_raw},
{other_reader}, {other_writer} tenant B's; {control} the control schema.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hostile:
    category: str
    sql: str
    rule: str  # SqlRejected.rule expected from the guard
    off: str = "refused"  # refused | timeout | ok, with the guard off
    note: str = ""  # why an "ok" is harmless


def _h(category: str, rule: str, off: str = "refused", note: str = ""):
    def make(sql: str) -> Hostile:
        return Hostile(category, sql, rule, off, note)

    return make


_write = _h("write own", "statement")
_write_other = _h("write other tenant / private / control", "statement")
_multi = _h("multi-statement", "multiple_statements")
_role = _h("role change", "statement")
_role_fn = _h("role change", "function")
_tx = _h("transaction control", "statement")
_copy = _h("COPY", "statement")
_file = _h("files, large objects, network", "function")
_sleep = _h("resource exhaustion", "function", "timeout")
_read_other = _h("read other tenant / private / control", "schema")
_catalog = _h("catalog", "catalog")
_catalog_q = _h("catalog", "schema")
_catalog_fn = _h("catalog", "function")
_cte = _h("data-modifying CTE", "write")
_lock = _h("row locks", "locking")
_into = _h("SELECT INTO", "select_into")
_code = _h("procedural code / session state", "statement")
_admin = _h("server administration", "function")
_explain = _h("EXPLAIN ANALYZE", "explain_analyze")


def _ok(make, note: str):
    def wrapped(sql: str) -> Hostile:
        h = make(sql)
        return Hostile(h.category, h.sql, h.rule, "ok", note)

    return wrapped


_HARMLESS_SESSION = "changes only this session's settings; ROLLBACK and DISCARD ALL undo it"
_HARMLESS_TX = "ends or nests the query's own read-only transaction; nothing else runs in it"
_LARGE_OBJECT = (
    "PostgreSQL before 16 lets a read-only transaction create a large object; ROLLBACK discards it "
    "(the test checks pg_largeobject_metadata); 16 refuses it"
)
_XID = "assigns a transaction id to the rolled-back transaction; nothing is written"
_METADATA = "catalog metadata (names, not data); rows of other roles are hidden or filtered by privilege"
_BY_OID = "other tenants' table, role and schema names and comments by OID: names, not data (docs/tools.md)"

HOSTILE: list[Hostile] = [
    # --- writes and DDL on the tenant's own objects: read-only transaction, and the reader owns nothing
    _write("INSERT INTO cases (case_id, case_type) VALUES (gen_random_uuid(), 'x')"),
    _write("INSERT INTO cases SELECT * FROM cases"),
    _write("UPDATE cases SET name = 'pwned'"),
    _write("UPDATE {own}.cases SET visits = 0 WHERE true"),
    _write("DELETE FROM cases"),
    _write("DELETE FROM {own}.forms"),
    _write("TRUNCATE cases"),
    _write("TRUNCATE {own}.users CASCADE"),
    _write("MERGE INTO cases c USING forms f ON c.case_id = f.case_id WHEN MATCHED THEN DELETE"),
    _write("ALTER TABLE cases ADD COLUMN x int"),
    _write("ALTER TABLE cases RENAME TO old_cases"),
    _write("ALTER TABLE cases OWNER TO {own_reader}"),
    _write("DROP TABLE cases"),
    _write("DROP SCHEMA {own} CASCADE"),
    _write("CREATE TABLE evil (x int)"),
    _write("CREATE TABLE {own}.evil AS SELECT * FROM cases"),
    _write("CREATE TEMP TABLE evil AS SELECT 1"),
    _write("CREATE UNLOGGED TABLE pg_temp.evil (x int)"),
    _write("CREATE VIEW v AS SELECT * FROM cases"),
    _write("CREATE MATERIALIZED VIEW mv AS SELECT * FROM cases"),
    _write("CREATE INDEX ON cases (name)"),
    _write("CREATE SEQUENCE s"),
    _write("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
    _write("CREATE OR REPLACE FUNCTION {own}.evil() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE FROM cases; END$$"),
    _write("CREATE EXTENSION dblink"),
    _write("CREATE SCHEMA evil"),
    _write("CREATE ROLE evil LOGIN SUPERUSER PASSWORD 'x'"),
    _write("CREATE DATABASE evil"),
    _write("CREATE POLICY p ON cases USING (false)"),
    _write("CREATE RULE r AS ON INSERT TO cases DO INSTEAD NOTHING"),
    _write("CREATE TRIGGER t BEFORE INSERT ON cases FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()"),
    _write("GRANT SELECT ON cases TO PUBLIC"),
    _write("GRANT ALL ON SCHEMA {own} TO PUBLIC"),
    _write("GRANT {own_writer} TO {own_reader}"),
    _write("REVOKE SELECT ON cases FROM {own_reader}"),
    _write("COMMENT ON TABLE cases IS 'pwned'"),
    _write("SECURITY LABEL ON TABLE cases IS 'x'"),
    _write("ALTER ROLE {own_reader} PASSWORD 'pwned'"),
    _write("ALTER USER CURRENT_USER WITH PASSWORD 'pwned'"),
    _write("ALTER ROLE {own_reader} SET search_path = {other}"),
    _write("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC"),
    _write("ALTER SYSTEM SET work_mem = '1GB'"),
    _write("REASSIGN OWNED BY {own_writer} TO {own_reader}"),
    _write("DROP OWNED BY {own_writer}"),
    _write("DROP ROLE {other_reader}"),
    _write("REINDEX TABLE cases"),
    _write("CLUSTER cases"),
    _write("VACUUM cases"),
    _write("VACUUM FULL"),
    _ok(_write, "skipped with a warning: only the owner may analyze a table")("ANALYZE cases"),
    _write("REFRESH MATERIALIZED VIEW mv"),
    _write("LOCK TABLE cases IN ACCESS EXCLUSIVE MODE"),
    _ok(_write, "ACCESS SHARE is what a SELECT takes anyway; released at ROLLBACK")("LOCK TABLE cases IN ACCESS SHARE MODE"),
    _write("IMPORT FOREIGN SCHEMA x FROM SERVER s INTO {own}"),
    _write("CHECKPOINT"),
    _write("LOAD 'auto_explain'"),
    # --- writes on another tenant, the private schemas, the control schema
    _write_other("INSERT INTO {other}.cases (case_id, case_type) VALUES (gen_random_uuid(), 'x')"),
    _write_other("UPDATE {other}.cases SET name = 'pwned'"),
    _write_other("DELETE FROM {other}.cases"),
    _write_other("TRUNCATE {other}.cases"),
    _write_other("DROP TABLE {other}.cases"),
    _write_other("ALTER TABLE {other}.cases OWNER TO {own_reader}"),
    _write_other("GRANT SELECT ON ALL TABLES IN SCHEMA {other} TO {own_reader}"),
    _write_other("GRANT USAGE ON SCHEMA {own_raw} TO {own_reader}"),
    _write_other("DELETE FROM {own_raw}.cases_raw"),
    _write_other("UPDATE {other_raw}.cases_raw SET payload = 'x'"),
    _write_other("DELETE FROM {control}.audit_log"),
    _write_other("UPDATE {control}.tenants SET reader_secret = NULL"),
    _write_other(
        "INSERT INTO {control}.audit_log (principal, tool, arguments, status, duration_ms) VALUES ('x', 'x', '{{}}', 'ok', 0)"
    ),
    _write_other("TRUNCATE {control}.runs"),
    _write_other("DROP SCHEMA {control} CASCADE"),
    # --- several statements in one: the extended protocol carries one
    _multi("SELECT 1; DELETE FROM cases"),
    _multi("SELECT count(*) FROM cases; SELECT * FROM {other}.cases"),
    _multi("COMMIT; DELETE FROM cases"),
    _multi("ROLLBACK; UPDATE cases SET name = 'x'"),
    _multi("END; INSERT INTO cases (case_id, case_type) VALUES (gen_random_uuid(), 'x')"),
    _multi("RESET ROLE; SELECT * FROM {other}.cases"),
    _multi("SET ROLE {other_writer}; SELECT * FROM {other}.cases"),
    _multi("SET SESSION AUTHORIZATION DEFAULT; SELECT * FROM {other}.cases"),
    _multi("SET TRANSACTION READ WRITE; DELETE FROM cases"),
    _multi("SELECT 1; COMMIT; DROP TABLE cases"),
    _multi("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'; SELECT f()"),
    _multi("SET search_path TO {other}; SELECT * FROM cases"),
    _multi("DISCARD ALL; SELECT * FROM {other}.cases"),
    _multi("SELECT 1;;SELECT 2"),
    _multi("select 1; -- a comment\n select note from {other}.cases"),
    _multi("SELECT $$;$$; DELETE FROM cases"),
    # --- role changes: the reader is a member of nothing
    _role("SET ROLE {other_writer}"),
    _role("SET ROLE {own_writer}"),
    _role("SET ROLE {other_reader}"),
    _role("SET ROLE postgres"),
    _role("SET LOCAL ROLE {other_writer}"),
    _role("SET SESSION AUTHORIZATION postgres"),
    _role("SET SESSION AUTHORIZATION {other_reader}"),
    _ok(_role, "the reader is the session user; resetting the role leaves it the reader")("RESET ROLE"),
    _ok(_role, "the session user is the reader itself")("RESET SESSION AUTHORIZATION"),
    _ok(_role, "the reader may become only itself")("SET ROLE {own_reader}"),
    _role_fn("SELECT set_config('role', '{other_writer}', false)"),
    _role_fn("SELECT set_config('role', '{own_writer}', true)"),
    _role_fn("SELECT set_config('session_authorization', 'postgres', false)"),
    _ok(_role_fn, "name resolution only; privileges still apply, and ROLLBACK/DISCARD ALL undo it")(
        "SELECT set_config('search_path', '{other}', false)"
    ),
    _ok(_role_fn, _HARMLESS_SESSION)("SELECT set_config('default_transaction_read_only', 'off', false)"),
    _role_fn("SELECT set_config('transaction_read_only', 'off', true)"),
    Hostile("resource exhaustion", "SELECT set_config('statement_timeout', '0', false), pg_sleep(5)", "function", "timeout"),
    # --- session settings and transaction control
    _ok(_code, _HARMLESS_SESSION)("SET statement_timeout = 0"),
    _ok(_code, _HARMLESS_SESSION)("SET default_transaction_read_only = off"),
    _code("SET transaction_read_only = off"),
    _code("SET TRANSACTION READ WRITE"),
    _ok(_code, _HARMLESS_SESSION)("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
    _ok(_code, "name resolution only; privileges still apply")("SET search_path TO {other}"),
    _ok(_code, _HARMLESS_SESSION)("RESET ALL"),
    _ok(_code, "shows settings a plain role may see")("SHOW search_path"),
    _ok(_code, "shows settings a plain role may see; superuser-only ones are hidden")("SHOW ALL"),
    _code("SHOW data_directory"),
    _code("DISCARD ALL"),
    _ok(_code, _HARMLESS_SESSION)("DISCARD PLANS"),
    _ok(_tx, _HARMLESS_TX)("COMMIT"),
    _ok(_tx, _HARMLESS_TX)("ROLLBACK"),
    _ok(_tx, _HARMLESS_TX)("ABORT"),
    _ok(_tx, _HARMLESS_TX)("END"),
    _ok(_tx, _HARMLESS_TX)("BEGIN"),
    _tx("BEGIN READ WRITE"),
    _tx("START TRANSACTION ISOLATION LEVEL SERIALIZABLE READ WRITE"),
    _ok(_tx, _HARMLESS_TX)("SAVEPOINT s"),
    _tx("RELEASE SAVEPOINT s"),
    _tx("ROLLBACK TO SAVEPOINT s"),
    _tx("PREPARE TRANSACTION 'evil'"),
    _tx("COMMIT PREPARED 'evil'"),
    # --- COPY: to the client the executor refuses it; to files and programs PostgreSQL does
    _copy("COPY cases TO STDOUT"),
    _copy("COPY (SELECT * FROM cases) TO STDOUT WITH (FORMAT csv)"),
    _copy("COPY {other}.cases TO STDOUT"),
    _copy("COPY (SELECT * FROM {other}.cases) TO STDOUT"),
    _copy("COPY {control}.tenants TO STDOUT"),
    _copy("COPY cases TO '/tmp/evil.csv'"),
    _copy("COPY cases TO PROGRAM 'id'"),
    _copy("COPY cases FROM STDIN"),
    _copy("COPY cases FROM '/etc/passwd'"),
    _copy("COPY cases FROM PROGRAM 'id'"),
    # --- files, large objects, other databases
    _file("SELECT pg_read_file('/etc/passwd')"),
    _file("SELECT pg_read_file('postgresql.conf')"),
    _file("SELECT pg_read_binary_file('/etc/passwd')"),
    _file("SELECT * FROM pg_ls_dir('.')"),
    _file("SELECT pg_stat_file('postgresql.conf')"),
    _file("SELECT * FROM pg_ls_logdir()"),
    _file("SELECT * FROM pg_ls_waldir()"),
    _file("SELECT * FROM pg_ls_tmpdir()"),
    _file("SELECT pg_current_logfile()"),
    _file("SELECT lo_import('/etc/passwd')"),
    _file("SELECT lo_export(1, '/tmp/evil')"),
    _ok(_file, _LARGE_OBJECT)("SELECT lo_creat(-1)"),
    _ok(_file, _LARGE_OBJECT)("SELECT lo_from_bytea(0, 'x')"),
    _file("SELECT lo_get(1)"),
    _file("SELECT loread(lo_open(1, 262144), 100)"),
    _file("SELECT dblink('dbname=postgres', 'SELECT 1')"),
    _file("SELECT dblink_connect('x', 'dbname=postgres')"),
    Hostile("files, large objects, network", "SELECT public.dblink('dbname=postgres', 'SELECT 1')", "schema"),
    _ok(_file, "reveals the server's address, which the gateway's own DSN already names")("SELECT inet_server_addr()"),
    # --- signalling, sleeping, locking: resource exhaustion and interference
    _catalog("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'postgres'"),
    _catalog("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = 'postgres'"),
    _admin("SELECT pg_terminate_backend(pg_backend_pid())"),
    _sleep("SELECT pg_sleep(10)"),
    _sleep("SELECT pg_sleep_for('10 seconds')"),
    _sleep("SELECT pg_sleep_until(now() + interval '10 seconds')"),
    _sleep("SELECT count(*) FROM cases WHERE pg_sleep(0.1) IS NOT NULL"),
    _sleep("WITH s AS (SELECT pg_sleep(10)) SELECT * FROM s"),
    _sleep("SELECT * FROM generate_series(1, 10) g, LATERAL (SELECT pg_sleep(1)) x"),
    _sleep("SELECT (SELECT pg_sleep(10))"),
    Hostile("resource exhaustion", "SELECT pg_catalog.pg_sleep(10)", "schema", "timeout"),
    Hostile("resource exhaustion", 'SELECT "pg_sleep"(10)', "function", "timeout"),
    Hostile("resource exhaustion", 'SELECT U&"pg\\005fsleep"(10)', "unicode_escape", "timeout"),
    Hostile("resource exhaustion", "DO $$BEGIN PERFORM pg_sleep(10); END$$", "statement", "timeout"),
    Hostile("resource exhaustion", "EXPLAIN (ANALYZE, BUFFERS) SELECT pg_sleep(10)", "explain_analyze", "timeout"),
    _ok(_admin, "session-level lock; DISCARD ALL releases it before the session is reused")("SELECT pg_advisory_lock(4242)"),
    _ok(_admin, "session-level lock; DISCARD ALL releases it")("SELECT pg_try_advisory_lock(4243)"),
    _ok(_admin, "transaction-level lock; released at ROLLBACK")("SELECT pg_advisory_xact_lock(4244)"),
    _ok(_admin, "session-level lock; DISCARD ALL releases it")("SELECT pg_advisory_lock_shared(4245)"),
    _ok(_admin, "releases only this session's own locks")("SELECT pg_advisory_unlock_all()"),
    _ok(_admin, "queued until COMMIT, and the query's transaction is rolled back")("SELECT pg_notify('chan', 'x')"),
    _ok(_code, "takes effect at COMMIT only; rolled back, and DISCARD ALL unlistens")("LISTEN chan"),
    _ok(_code, "sent at COMMIT only; rolled back")("NOTIFY chan, 'x'"),
    _ok(_code, "unlistens this session only")("UNLISTEN *"),
    # --- reads of another tenant, the private schemas, the control schema
    _read_other("SELECT * FROM {other}.cases"),
    _read_other("SELECT count(*) FROM {other}.forms"),
    _read_other('SELECT * FROM "{other}"."cases"'),
    _read_other("SELECT * FROM {other_upper}.CASES"),
    _read_other("TABLE {other}.users"),
    _read_other("SELECT (SELECT note FROM {other}.cases LIMIT 1)"),
    _read_other("SELECT * FROM cases c JOIN {other}.cases o ON o.case_id = c.case_id"),
    _read_other("SELECT * FROM cases WHERE EXISTS (SELECT 1 FROM {other}.cases)"),
    _read_other("WITH x AS (SELECT * FROM {other}.cases) SELECT * FROM x"),
    _read_other("SELECT * FROM cases, LATERAL (SELECT note FROM {other}.cases LIMIT 1) o"),
    _read_other("SELECT note FROM cases UNION ALL SELECT note FROM {other}.cases"),
    _read_other("VALUES ((SELECT note FROM {other}.cases LIMIT 1))"),
    _read_other("SELECT {other}.cases.note FROM {other}.cases"),
    _read_other("EXPLAIN SELECT * FROM {other}.cases"),
    _read_other("SELECT * FROM {own_raw}.cases_raw"),
    _read_other("SELECT * FROM {other_raw}.cases_raw"),
    _read_other("SELECT * FROM {own_build}.cases"),
    _read_other("SELECT * FROM {control}.tenants"),
    _read_other("SELECT reader_secret FROM {control}.tenants"),
    _read_other("SELECT * FROM {control}.runs"),
    _read_other("SELECT * FROM {control}.audit_log"),
    _read_other("SELECT * FROM {control}.run_credentials"),
    _read_other("SELECT * FROM {control}.tenant_metadata"),
    _read_other("SELECT * FROM public.anything"),
    Hostile("read other tenant / private / control", "SELECT query_to_xml('SELECT * FROM {other}.cases', true, false, '')", "function"),
    Hostile("read other tenant / private / control", "SELECT table_to_xml('{other}.cases', true, false, '')", "function"),
    Hostile("read other tenant / private / control", "SELECT table_to_xml('{control}.tenants', true, false, '')", "function"),
    Hostile("read other tenant / private / control", "SELECT ts_stat('SELECT to_tsvector(note) FROM {other}.cases')", "function"),
    Hostile(
        "read other tenant / private / control", "SELECT query_to_xml('SELECT count(*) FROM cases', true, false, '')",
        "function", "ok", "runs as the reader: only the tenant's own tables (refused where built without libxml)",
    ),
    Hostile(
        "read other tenant / private / control", "SELECT schema_to_xml('{other}', true, false, '')", "function", "refused",
    ),
    # --- the catalogs: pg_authid and pg_shadow are closed; the rest is metadata
    _catalog("SELECT * FROM pg_authid"),
    _catalog_q("SELECT rolname, rolpassword FROM pg_catalog.pg_authid"),
    _catalog("SELECT * FROM pg_shadow"),
    _catalog_q("SELECT passwd FROM pg_catalog.pg_shadow"),
    _catalog("SELECT * FROM pg_statistic"),
    _catalog("SELECT * FROM pg_largeobject"),
    _catalog("SELECT * FROM pg_hba_file_rules"),
    _catalog("SELECT * FROM pg_file_settings"),
    _catalog("SELECT * FROM pg_stat_statements"),
    _ok(_catalog, "passwords shown as ********")("SELECT * FROM pg_user"),
    _ok(_catalog, "passwords shown as ********")("SELECT rolname, rolpassword FROM pg_roles"),
    _ok(_catalog, _METADATA)("SELECT * FROM pg_stat_activity"),
    _ok(_catalog, _METADATA + " (it does list other tenants' schema names)")("SELECT nspname FROM pg_namespace"),
    _ok(_catalog, _METADATA)("SELECT relname, relkind FROM pg_class"),
    _ok(_catalog_q, _METADATA)("SELECT * FROM information_schema.tables"),
    _ok(_catalog_q, "filtered by privilege: empty")("SELECT * FROM information_schema.columns WHERE table_schema = '{other}'"),
    _ok(_catalog, "settings a plain role may see")("SELECT * FROM pg_settings"),
    _ok(_catalog, "filtered by privilege: empty")("SELECT * FROM pg_stats WHERE schemaname = '{other}'"),
    _ok(_catalog, _METADATA + " (row counts of other tenants' tables)")("SELECT * FROM pg_stat_user_tables"),
    _ok(_catalog_q, _METADATA)("SELECT proname FROM pg_catalog.pg_proc"),
    # --- other tenants' names and comments by OID: the guard refuses; PostgreSQL alone answers (docs/tools.md)
    _ok(_catalog, _BY_OID)("SELECT o::regclass::text FROM generate_series(16384, 40000) o WHERE o::regclass::text LIKE '{other}.%'"),
    _ok(_catalog, _BY_OID)("SELECT o::regrole FROM generate_series(10, 40000) o WHERE o::regrole::text LIKE '%reader'"),
    _ok(_catalog, _BY_OID)("SELECT o::regnamespace FROM generate_series(2200, 40000) o WHERE o::regnamespace::text LIKE '%__raw'"),
    _ok(_catalog_fn, _BY_OID)("SELECT obj_description(o::oid, 'pg_class') FROM generate_series(16384, 40000) o"),
    _ok(_catalog_fn, _BY_OID)("SELECT col_description(o::oid, 1) FROM generate_series(16384, 40000) o"),
    _ok(_catalog_fn, _BY_OID)("SELECT format_type(o::oid, NULL) FROM generate_series(16384, 40000) o"),
    # --- locking clauses, SELECT INTO, data-modifying CTEs, parameters
    _lock("SELECT * FROM cases FOR UPDATE"),
    _lock("SELECT * FROM cases FOR SHARE"),
    _lock("SELECT * FROM cases FOR NO KEY UPDATE SKIP LOCKED"),
    _lock("SELECT * FROM cases FOR KEY SHARE NOWAIT"),
    _lock("SELECT * FROM cases c JOIN forms f USING (case_id) FOR UPDATE OF c"),
    _lock("SELECT * FROM (SELECT * FROM cases FOR UPDATE) x"),
    _into("SELECT * INTO evil FROM cases"),
    _into("SELECT * INTO TEMP evil FROM cases"),
    _cte("WITH d AS (DELETE FROM cases RETURNING *) SELECT count(*) FROM d"),
    _cte("WITH u AS (UPDATE cases SET name = 'x' RETURNING *) SELECT * FROM u"),
    _cte("WITH i AS (INSERT INTO cases (case_id, case_type) VALUES (gen_random_uuid(), 'x') RETURNING *) SELECT * FROM i"),
    _cte("WITH d AS (DELETE FROM {other}.cases RETURNING *) SELECT * FROM d"),
    _cte("WITH a AS (SELECT 1), d AS (DELETE FROM forms RETURNING form_id) SELECT * FROM a, d"),
    Hostile("parameters", "SELECT * FROM cases WHERE case_type = $1", "parameter"),
    # --- EXPLAIN ANALYZE executes
    _explain("EXPLAIN ANALYZE DELETE FROM cases"),
    _explain("EXPLAIN (ANALYZE true) UPDATE cases SET name = 'x'"),
    _explain("EXPLAIN ANALYZE SELECT * FROM {other}.cases"),
    _ok(_explain, "runs the SELECT and shows the plan: the tenant's own data only")("EXPLAIN ANALYZE SELECT count(*) FROM cases"),
    # --- procedural code and session state
    _code("DO $$BEGIN DELETE FROM cases; END$$"),
    _code("DO $$BEGIN EXECUTE 'SET ROLE {other_writer}'; END$$"),
    _code("DO $$BEGIN RESET ROLE; PERFORM * FROM {other}.cases; END$$"),
    _code("DO $$BEGIN COMMIT; END$$"),
    _code("DO $$BEGIN CREATE TEMP TABLE t (x int); END$$"),
    _ok(_code, "runs as the reader in the read-only transaction")("DO $$BEGIN PERFORM count(*) FROM cases; END$$"),
    _code("CALL some_procedure()"),
    _ok(_code, "parse only; executing it would be refused, and DISCARD ALL deallocates it")("PREPARE p AS DELETE FROM cases"),
    _code("EXECUTE p"),
    _ok(_code, "this session's prepared statements only")("DEALLOCATE ALL"),
    _ok(_code, "a cursor of this transaction; closed at ROLLBACK")("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM cases"),
    _code("FETCH ALL FROM c"),
    _ok(_code, "closes this session's cursors only")("CLOSE ALL"),
    # --- server administration functions
    _admin("SELECT pg_reload_conf()"),
    _admin("SELECT pg_rotate_logfile()"),
    _admin("SELECT * FROM pg_hba_file_rules()"),
    _ok(_admin, _XID)("SELECT txid_current()"),
    _ok(_admin, _XID)("SELECT pg_current_xact_id()"),
    _ok(_admin, "exports a snapshot that dies with the query's transaction")("SELECT pg_export_snapshot()"),
    _admin("SELECT pg_create_restore_point('x')"),
    _admin("SELECT pg_switch_wal()"),
    _admin("SELECT * FROM pg_logical_slot_get_changes('x', NULL, NULL)"),
    _admin("SELECT pg_create_logical_replication_slot('x', 'test_decoding')"),
    _admin("SELECT pg_stat_reset()"),
    _admin("SELECT pg_backup_start('x')"),
    _admin("SELECT pg_promote()"),
    _admin("SELECT nextval('cases_seq')"),
    _admin("SELECT setval('cases_seq', 1)"),
    _ok(_admin, _HARMLESS_SESSION.replace("ROLLBACK and DISCARD ALL undo it", "the random seed of this session"))(
        "SELECT setseed(0.5)"
    ),
    _admin("SELECT pg_signal_backend(1, 9)"),
    _admin("SELECT brin_summarize_new_values('cases'::regclass)"),
    _admin("SELECT binary_upgrade_set_next_pg_authid_oid(1)"),
]


def rendered(placeholders: dict[str, str]) -> list[tuple[Hostile, str]]:
    return [(h, h.sql.format(**placeholders)) for h in HOSTILE]
