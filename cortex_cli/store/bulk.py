"""The index's bulk write path, per backend: the same rows and semantics as `dialect`'s inserts, at bulk speed.

One call writes one transaction of finished index work (`index.IndexRows`): TSV maps, top-n rows
and the run's token counts.

- PostgreSQL: psycopg 3 `COPY` (binary) into per-connection staging tables (`ON COMMIT DELETE ROWS`),
  then one set-based `INSERT ... SELECT ... ON CONFLICT DO NOTHING` per table, maps `RETURNING`
  the images this transaction inserted; their counts are staged the same way and merged with one
  `INSERT ... SELECT ... ON CONFLICT DO UPDATE` (counters added).
  The commit is synchronous even on a server whose default is not: progress reports only what survives a crash.
- SQLite: `BEGIN IMMEDIATE` (the write lock first, so what this transaction reads is what it writes
  over), then prepared `executemany` statements.

Either way every insert skips rows already there, and only the images whose map this transaction
inserted get top-n rows and counts (an image's map, top-n rows and counts are written together, so a
stored map means the rest is stored), so concurrent writers and reruns never duplicate or double-count,
and no derived row is written without its parent in the same transaction (they carry no foreign keys:
migration 0011). Rows are sent in key order
(images, then rank; counts by key) so two PostgreSQL writers lock shared keys in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from sqlalchemy.orm import Session

# (name, PostgreSQL type) of each staged column
_STAGES = {
    "cortex_stage_maps": (("image_id", "int4"), ("tsv", "bytea")),
    "cortex_stage_tokens": (("image_id", "int4"), ("rank", "int4"), ("class_pk", "int4"), ("position", "int4"), ("token", "int4"),
                            ("tsv", "float8")),
    "cortex_stage_counts": (("split", "text"), ("class_pk", "int4"), ("token", "int4"), ("salient", "int4"), ("salient_images", "int4"),
                            ("occurrences", "int4"), ("occurrence_images", "int4")),
}
COUNT_COLUMNS = ("salient", "salient_images", "occurrences", "occurrence_images")

# (split, class_pk, token, salient, salient_images, occurrences, occurrence_images) rows, and (split, class_pk, images) rows
CountRows = tuple[list[tuple], list[tuple]]


def _columns(stage: str) -> str:
    return ", ".join(name for name, _ in _STAGES[stage])


def _copy(cursor: Any, stage: str, rows: Sequence[tuple]) -> None:
    """COPY rows into a staging table in psycopg's binary format."""
    with cursor.copy(f"COPY {stage} ({_columns(stage)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind for _, kind in _STAGES[stage]])
        for row in rows:
            copy.write_row(row)


def _postgresql(session: Session, run_id: int, maps: list[tuple], tokens: list[tuple], counts_for: Callable[[Session, list[int]], CountRows]) -> set[int]:
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cur:
        # what the indexer reports as committed must survive a server crash, whatever the server's default
        cur.execute("SET LOCAL synchronous_commit TO on")
        for stage, columns in _STAGES.items():
            spec = ", ".join(f"{name} {kind}" for name, kind in columns)
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({spec}) ON COMMIT DELETE ROWS")
        _copy(cur, "cortex_stage_maps", maps)
        _copy(cur, "cortex_stage_tokens", tokens)
        cur.execute("INSERT INTO saliency_maps (run_id, image_id, tsv) SELECT %s, image_id, tsv FROM cortex_stage_maps "
                    "ORDER BY image_id ON CONFLICT DO NOTHING RETURNING image_id", (run_id,))
        inserted = {int(r[0]) for r in cur.fetchall()}
        if not inserted:  # every map was there: so were its top-n rows and counts, written with it
            return inserted
        cur.execute(f"INSERT INTO salient_tokens (run_id, {_columns('cortex_stage_tokens')}) "
                    f"SELECT %s, {_columns('cortex_stage_tokens')} FROM cortex_stage_tokens WHERE image_id = ANY(%s::int4[]) "
                    "ORDER BY image_id, rank ON CONFLICT DO NOTHING", (run_id, sorted(inserted)))
        token_rows, class_rows = counts_for(session, sorted(inserted))
        cur.executemany("INSERT INTO run_class_counts (run_id, split, class_pk, images) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (run_id, split, class_pk) DO UPDATE SET images = run_class_counts.images + EXCLUDED.images",
                        [(run_id, *row) for row in sorted(class_rows)])
        _copy(cur, "cortex_stage_counts", token_rows)
        added = ", ".join(f"{c} = run_token_counts.{c} + EXCLUDED.{c}" for c in COUNT_COLUMNS)
        cur.execute(f"INSERT INTO run_token_counts (run_id, {_columns('cortex_stage_counts')}) "
                    f"SELECT %s, {_columns('cortex_stage_counts')} FROM cortex_stage_counts ORDER BY split, class_pk, token "
                    f"ON CONFLICT (run_id, split, class_pk, token) DO UPDATE SET {added}", (run_id,))
    return inserted


def _sqlite(session: Session, run_id: int, maps: list[tuple], tokens: list[tuple], counts_for: Callable[[Session, list[int]], CountRows]) -> set[int]:
    driver = session.connection().connection.driver_connection
    if not driver.in_transaction:
        driver.execute("BEGIN IMMEDIATE")  # hold the write lock before reading which maps exist: no one writes in between
    ids = [m[0] for m in maps]
    existing: set[int] = set()
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        marks = ",".join("?" * len(chunk))
        existing.update(r[0] for r in driver.execute(
            f"SELECT image_id FROM saliency_maps WHERE run_id = ? AND image_id IN ({marks})", (run_id, *chunk)))
    inserted = set(ids) - existing
    if not inserted:  # every map was there: so were its top-n rows and counts, written with it
        return inserted
    driver.executemany("INSERT INTO saliency_maps (run_id, image_id, tsv) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                       [(run_id, *m) for m in maps if m[0] in inserted])
    driver.executemany(f"INSERT INTO salient_tokens (run_id, {_columns('cortex_stage_tokens')}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT DO NOTHING", [(run_id, *t) for t in tokens if t[0] in inserted])
    token_rows, class_rows = counts_for(session, sorted(inserted))
    driver.executemany("INSERT INTO run_class_counts (run_id, split, class_pk, images) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (run_id, split, class_pk) DO UPDATE SET images = images + excluded.images",
                       [(run_id, *row) for row in sorted(class_rows)])
    added = ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNT_COLUMNS)
    driver.executemany(f"INSERT INTO run_token_counts (run_id, {_columns('cortex_stage_counts')}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                       f"ON CONFLICT (run_id, split, class_pk, token) DO UPDATE SET {added}", [(run_id, *r) for r in token_rows])
    return inserted


WRITERS = {"postgresql": _postgresql, "sqlite": _sqlite}


def ceiling(session: Session, run_id: int, maps: list[tuple], tokens: list[tuple]) -> None:
    """The same map and top-n rows through the backend's raw bulk path: a bare COPY / executemany, no conflict
    handling, no counts (what `benchmarks/bench_store.py` reports the write path against)."""
    driver = session.connection().connection.driver_connection
    columns = _columns("cortex_stage_tokens")
    if session.get_bind().dialect.name == "postgresql":
        with driver.cursor() as cur:
            with cur.copy("COPY saliency_maps (run_id, image_id, tsv) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "int4", "bytea"])
                for m in maps:
                    copy.write_row((run_id, *m))
            with cur.copy(f"COPY salient_tokens (run_id, {columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4"] + [kind for _, kind in _STAGES["cortex_stage_tokens"]])
                for t in tokens:
                    copy.write_row((run_id, *t))
    else:
        driver.executemany("INSERT INTO saliency_maps (run_id, image_id, tsv) VALUES (?, ?, ?)", [(run_id, *m) for m in maps])
        driver.executemany(f"INSERT INTO salient_tokens (run_id, {columns}) VALUES (?, ?, ?, ?, ?, ?, ?)", [(run_id, *t) for t in tokens])


__all__ = ["COUNT_COLUMNS", "WRITERS", "ceiling"]
