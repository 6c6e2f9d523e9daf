"""Append-only, hash-chained audit ledger (table ``audit_ledger``, SQLAlchemy Core).

Every consequential step of the loop — drift events, approvals, training runs, gate
decisions, promotions, rejections, rollbacks, retention — appends one row. It lives in the
same SQL database as the drift history (``DRIFTLOOP_DATABASE_URL``: SQLite on the embedded
stack, PostgreSQL in production). What a row holds and how rows chain is
:mod:`driftloop.audit.chain`; how things are hashed, :mod:`driftloop.audit.hashing`.
Tamper evidence against a writer of the table (:mod:`driftloop.audit.verify`): each row
carries an HMAC under a key the database never sees (``hmac_key``), and after each commit a
write-once anchor goes to S3 (``anchors``, :mod:`driftloop.audit.anchor`). ``verify`` checks
the chain, every MAC and every anchor and names the first rewritten or missing row. Before
appending, the ledger writes the anchors that recent rows are missing (a writer that died
between commit and anchor) and refuses to chain onto a head row that fails its hash or MAC;
an anchor that cannot be written fails the append (the row stays: the next append or
``driftloop ledger anchor`` writes its anchor). A ledger with keyed rows refuses unkeyed
appends. Which key and which bucket: :func:`driftloop.audit.wiring.ledger_for`.

Idempotency. ``idempotency_key`` is unique: a re-run of the same DAG task writes the same
key, and ``append`` returns the row already there instead of adding a second one.

Concurrency. Appends are serialised, so two writers can never fork the chain:

* SQLite: the append transaction starts with ``BEGIN IMMEDIATE`` (takes the database's write
  lock before the head row is read; other writers wait for the busy timeout), with a retry
  on "database is locked".
* PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key, in a READ COMMITTED transaction
  (the head row is read after the lock is granted, so it is the committed head); the lock is
  released at commit or rollback. It also works on an empty table, where ``FOR UPDATE`` on
  the last row would lock nothing.
* other dialects: ``SELECT … FOR UPDATE`` on the head row.

Whatever the dialect, ``id``, ``prev_hash`` and ``row_hash`` are UNIQUE, so two rows can
never claim the same predecessor even if the lock were bypassed; a writer that loses such a
race gets an integrity error and retries on the new head.

Command line (:mod:`driftloop.cli`; this module's ``-m`` form is kept for runbooks)::

    driftloop ledger verify [--database-url URL] [--expect-head HASH] [--json]
    driftloop ledger anchor [--database-url URL]      write missing anchors of intact rows
    driftloop ledger migrate | grant-app-role ROLE     schema (driftloop.audit.schema)
    driftloop ledger show [--database-url URL] [--subject S] [--kind K] [--limit N] [--json]
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from driftloop.audit.anchor import AnchorStore
from driftloop.audit.anchoring import AnchorError, AnchoringMixin, LedgerError
from driftloop.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    LedgerEntry,
    VerifyResult,
    audit_ledger,
    compute_row_hash,
    compute_row_mac,
    metadata,
)
from driftloop.audit.hashing import canonical_json, sha256_bytes, sha256_file, sha256_json
from driftloop.audit.schema import create_engine, engine_at_head, upgrade

__all__ = [
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "KINDS",
    "AnchorError",
    "AnchorStore",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "VerifyResult",
    "audit_ledger",
    "canonical_json",
    "compute_row_hash",
    "compute_row_mac",
    "engine_for",
    "metadata",
    "model_subject",
    "sha256_bytes",
    "sha256_file",
    "sha256_json",
    "task_key",
]

KINDS = (
    "drift_event",
    "approval",
    "training_run",
    "dataset_snapshot",
    "evaluation",
    "gate_decision",
    "promotion",
    "rejection",
    "rollback",
    "retention",
)
_KIND_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# pg_advisory_xact_lock key: first 8 bytes of sha256("driftloop.audit_ledger"), signed.
PG_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"driftloop.audit_ledger").digest()[:8], "big", signed=True
)
MAX_ATTEMPTS = 20


def model_subject(model_name: str, version: int | str) -> str:
    """The ledger subject of a registered model version: ``model:<name>/v<version>``."""
    return f"model:{model_name}/v{version}"


def task_key(dag_id: str, run_id: str, task_id: str, map_index: int = -1, *extra: str) -> str:
    """Idempotency key of a DAG task instance: the same on every retry of that task."""
    parts = [dag_id, run_id, task_id] + ([str(map_index)] if map_index >= 0 else [])
    return "/".join([*parts, *map(str, extra)])


def engine_for(url: str) -> sa.Engine:
    """An engine for ``url`` with the schema migrated to head (SQLite: 30 s busy timeout)."""
    return engine_at_head(url)


def _is_sqlite_busy(err: BaseException) -> bool:
    text = str(getattr(err, "orig", err)).lower()
    return "locked" in text or "busy" in text


class Ledger(AnchoringMixin):
    """The audit ledger in the database of ``engine_or_url``.

    ``hmac_key``: the rows' MAC key (None: unkeyed rows, refused once the ledger has keyed
    rows). ``anchors``: where each row's write-once anchor goes (None: no anchors).
    ``create``: migrate the schema to head (the CLI's ``verify`` does not).
    ``clock``: returns the timestamp of a new row (UTC; tests pin it).
    """

    def __init__(
        self,
        engine_or_url: sa.Engine | str,
        *,
        hmac_key: bytes | None = None,
        anchors: AnchorStore | None = None,
        create: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if isinstance(engine_or_url, str):
            self.engine = engine_at_head(engine_or_url) if create else create_engine(engine_or_url)
        else:
            self.engine = engine_or_url
            if create:
                upgrade(self.engine)
        if hmac_key is not None and len(hmac_key) < 32:
            raise ValueError("the ledger HMAC key must have at least 32 bytes")
        self._key = hmac_key
        self.anchors = anchors
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def exists(self) -> bool:
        return sa.inspect(self.engine).has_table(audit_ledger.name)

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _write_transaction(self) -> Iterator[tuple[sa.Connection, bool]]:
        """A transaction holding the ledger's write lock; yields (connection, locked)."""
        dialect = self.engine.dialect.name
        with self.engine.connect() as conn:
            locked = False
            if dialect == "sqlite":
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    locked = True
                except sa.exc.OperationalError as err:
                    # The engine opens its own transactions (isolation_level=None + a "begin"
                    # listener, or Python 3.12's autocommit=False): go on in that deferred
                    # transaction; the UNIQUE constraints and the retry keep the chain linear.
                    if "within a transaction" not in str(err.orig):
                        raise
            elif dialect == "postgresql":
                conn.execution_options(isolation_level="READ COMMITTED")
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LOCK_KEY)))
                locked = True
            try:
                yield conn, locked
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def append(
        self,
        kind: str,
        *,
        actor: str,
        subject: str,
        payload: Any,
        input_hashes: Mapping[str, str] | None = None,
        idempotency_key: str,
    ) -> LedgerEntry:
        """Append a row, or return the row already written under ``idempotency_key``
        (``entry.inserted`` tells which)."""
        _check_text("kind", kind, 64)
        if not _KIND_RE.match(kind):
            raise ValueError(f"kind must match {_KIND_RE.pattern}, got {kind!r}")
        _check_text("actor", actor, 250)
        _check_text("subject", subject, 500)
        _check_text("idempotency_key", idempotency_key, 500)
        hashes = dict(input_hashes or {})
        for name, value in hashes.items():
            if not isinstance(name, str) or not isinstance(value, str) or not value:
                raise ValueError(f"input_hashes must map names to hash strings, got {name!r}")
        payload_text = canonical_json(payload)
        hashes_text = canonical_json(hashes)
        self._anchor_recent_rows()  # a writer that died between its commit and its anchor

        last_error: BaseException | None = None
        for attempt in range(MAX_ATTEMPTS):
            try:
                with self._write_transaction() as (conn, locked):
                    existing = (
                        conn.execute(
                            sa.select(audit_ledger).where(
                                audit_ledger.c.idempotency_key == idempotency_key
                            )
                        )
                        .mappings()
                        .first()
                    )
                    if existing is not None:
                        entry = LedgerEntry._from_row(existing, inserted=False)
                        break
                    head_q = sa.select(audit_ledger).order_by(audit_ledger.c.id.desc()).limit(1)
                    if not locked and self.engine.dialect.name != "sqlite":
                        head_q = head_q.with_for_update()
                    head = conn.execute(head_q).mappings().first()
                    self._check_head(head)
                    row = {
                        "id": 1 if head is None else int(head["id"]) + 1,
                        "recorded_at": _iso_utc(self._clock()),
                        "kind": kind,
                        "actor": actor,
                        "subject": subject,
                        "idempotency_key": idempotency_key,
                        "payload": payload_text,
                        "input_hashes": hashes_text,
                        "prev_hash": GENESIS_HASH if head is None else head["row_hash"],
                    }
                    row["row_hash"] = compute_row_hash(row)
                    row["row_mac"] = (
                        None if self._key is None else compute_row_mac(self._key, row["row_hash"])
                    )
                    conn.execute(sa.insert(audit_ledger).values(**row))
                entry = LedgerEntry._from_row(row, inserted=True)
                break
            except sa.exc.IntegrityError as err:
                # another writer took this id / predecessor / key first: re-read the head
                last_error = err
            except sa.exc.OperationalError as err:
                if not _is_sqlite_busy(err):
                    raise
                last_error = err
            time.sleep(min(1.0, 0.01 * 2**attempt) * (0.5 + random.random()))
        else:
            raise LedgerError(
                f"could not append to the ledger after {MAX_ATTEMPTS} attempts: {last_error}"
            )
        # after the commit: an anchor of a row that was rolled back would be a lie
        self._anchor(entry.to_dict())  # also for an earlier append's row (its retry)
        return entry

    # -- reading ---------------------------------------------------------------------------

    def get(self, idempotency_key: str) -> LedgerEntry | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(audit_ledger).where(audit_ledger.c.idempotency_key == idempotency_key)
                )
                .mappings()
                .first()
            )
        return None if row is None else LedgerEntry._from_row(row)

    def head(self) -> LedgerEntry | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(audit_ledger).order_by(audit_ledger.c.id.desc()).limit(1))
                .mappings()
                .first()
            )
        return None if row is None else LedgerEntry._from_row(row)

    def entries(
        self, subject: str | None = None, kind: str | None = None, *, limit: int | None = None
    ) -> list[LedgerEntry]:
        """Rows in id order, optionally filtered; ``limit``: only the newest that many."""
        query = sa.select(audit_ledger)
        if subject is not None:
            query = query.where(audit_ledger.c.subject == subject)
        if kind is not None:
            query = query.where(audit_ledger.c.kind == kind)
        if limit is not None and limit > 0:
            query = query.order_by(audit_ledger.c.id.desc()).limit(limit)
        else:
            query = query.order_by(audit_ledger.c.id)
        with self.engine.connect() as conn:
            rows = [LedgerEntry._from_row(r) for r in conn.execute(query).mappings()]
        return sorted(rows, key=lambda e: e.id)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(audit_ledger)).scalar())

    # -- verification ----------------------------------------------------------------------

    def verify(self, expected_head: str | None = None) -> VerifyResult:
        """Check the chain, the MACs (with the key) and the anchors (with a store); name the
        first rewritten or missing row (:mod:`driftloop.audit.verify`)."""
        from driftloop.audit.verify import verify_ledger

        return verify_ledger(
            self.engine, key=self._key, anchors=self.anchors, expected_head=expected_head
        )


def _check_text(name: str, value: Any, max_len: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise ValueError(f"{name} is longer than {max_len} characters")


def _iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("the ledger clock must return timezone-aware datetimes")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


if __name__ == "__main__":  # pragma: no cover
    import sys

    from driftloop.cli import ledger_main

    sys.exit(ledger_main())
