"""Raw tables in a tenant's private ``<schema>__raw``, created from the pipeline's declarations.

Each raw table gets two bookkeeping columns: ``_generation`` (which full pass
last wrote the row, so a full refresh can drop rows the source no longer has)
and ``_loaded_at``. ``_sync_state`` holds one checkpoint per source, written in
the same transaction as the rows it covers. ``_published`` describes the run
whose tables are published (warehouse/increments.py).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from data_explorer.pipelines.registry import Table

BOOKKEEPING = (("_generation", "bigint NOT NULL"), ("_loaded_at", "timestamptz NOT NULL DEFAULT now()"))


def ensure_raw_tables(conn: psycopg.Connection, raw_schema: str, tables: tuple[Table, ...]) -> None:
    """Create missing raw tables and add columns a newer pipeline declares; idempotent."""
    ident = sql.Identifier
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}._sync_state ("
                " source text PRIMARY KEY, generation bigint NOT NULL, full_pending boolean NOT NULL,"
                " cursor jsonb, rows_total bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now())"
            ).format(ident(raw_schema))
        )
        # what the last full pass received beside what the server reported (added after the table was first shipped)
        conn.execute(sql.SQL("ALTER TABLE {}._sync_state ADD COLUMN IF NOT EXISTS counts jsonb").format(ident(raw_schema)))
        # when the source was last found to hold nothing CommCare has deleted (a reconcile, or a full pass)
        conn.execute(sql.SQL("ALTER TABLE {}._sync_state ADD COLUMN IF NOT EXISTS reconciled_at timestamptz").format(ident(raw_schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}._published ("
                " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), run_id uuid NOT NULL,"
                " fingerprint text NOT NULL, watermark timestamptz NOT NULL, generations jsonb NOT NULL,"
                " plan jsonb, reason text, updated_at timestamptz NOT NULL DEFAULT now())"
            ).format(ident(raw_schema))
        )
        for table in tables:
            columns = [sql.SQL("{} {}").format(ident(c.name), sql.SQL(c.type)) for c in table.columns]
            columns += [sql.SQL("{} {}").format(ident(name), sql.SQL(decl)) for name, decl in BOOKKEEPING]
            columns.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(ident, table.primary_key))))
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} ({})").format(
                    ident(raw_schema), ident(table.name), sql.SQL(", ").join(columns)
                )
            )
            for column in table.columns:
                conn.execute(
                    sql.SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}").format(
                        ident(raw_schema), ident(table.name), ident(column.name), sql.SQL(column.type)
                    )
                )
            _follow_primary_key(conn, raw_schema, table)
            if table.parent:
                # children are found by their parent's key; a primary key that starts with it serves
                # that already, and a second index would only cost every insert
                index = ident(f"{table.name}_{table.parent.key}_idx")
                if table.primary_key[0] == table.parent.key:
                    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}.{}").format(ident(raw_schema), index))
                else:
                    conn.execute(
                        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} ({})").format(
                            index, ident(raw_schema), ident(table.name), ident(table.parent.key)
                        )
                    )


def _follow_primary_key(conn: psycopg.Connection, raw_schema: str, table: Table) -> None:
    """Give a table made by an older pipeline the primary key the pipeline declares now (form_definitions
    went from xmlns to app_id and xmlns). Rows that do not fit the new key fail the change, naming it."""
    row = conn.execute(
        "SELECT c.conname, array_agg(a.attname ORDER BY k.ord) FROM pg_constraint c"
        " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
        " WHERE c.conrelid = %s::regclass AND c.contype = 'p' GROUP BY c.conname",
        (sql.SQL("{}.{}").format(sql.Identifier(raw_schema), sql.Identifier(table.name)).as_string(conn),),
    ).fetchone()
    if row is not None and list(row[1]) == list(table.primary_key):
        return
    drop = sql.SQL("DROP CONSTRAINT {}, ").format(sql.Identifier(row[0])) if row is not None else sql.SQL("")
    conn.execute(
        sql.SQL("ALTER TABLE {}.{} {}ADD PRIMARY KEY ({})").format(
            sql.Identifier(raw_schema), sql.Identifier(table.name), drop,
            sql.SQL(", ").join(map(sql.Identifier, table.primary_key)),
        )
    )


def read_case_updates(conn: psycopg.Connection, raw_schema: str) -> dict[tuple[str, str], tuple[int, list]]:
    """The case updates discover read from each form's XForm last time, by (app id, xmlns), with the app
    version they were read at; empty before the first discover."""
    with conn.transaction():  # ended here: the writer's next transactions are its own
        rows = conn.execute(
            sql.SQL(
                "SELECT app_id, xmlns, app_version, case_updates FROM {}.form_definitions"
                " WHERE app_version IS NOT NULL AND jsonb_typeof(case_updates) = 'array'"
            ).format(sql.Identifier(raw_schema))
        ).fetchall()
    return {(app_id, xmlns): (version, updates) for app_id, xmlns, version, updates in rows}
