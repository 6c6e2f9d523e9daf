"""Append-only, hash-chained audit ledger (table ``audit_ledger``, SQLAlchemy Core).

Every consequential step of the loop — drift events, approvals, training runs, gate
decisions, promotions, rejections, rollbacks, retention — appends one row. It lives in the
same SQL database as the drift history (``DRIFTLOOP_DATABASE_URL``: SQLite on the embedded
stack, PostgreSQL in production).

Row hash. ``row_hash = sha256(utf-8(canonical_json(doc)))`` where ``doc`` is the object
``{"id", "recorded_at", "kind", "actor", "subject", "idempotency_key", "payload",
"input_hashes", "prev_hash"}`` with ``payload`` and ``input_hashes`` as their stored JSON
*text*, and canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)``. ``recorded_at`` is stored as ISO-8601 text (UTC) so
that the hash is reproducible from the row alone. ``prev_hash`` is the previous row's
``row_hash`` (64 zeros for the first row), ids are consecutive from 1. ``verify`` recomputes
the chain in id order and names the first row whose content, link or id does not fit: an
edited row fails its own hash; a deleted row makes the next row's ``prev_hash`` (or id)
mismatch; swapped rows fail their hashes (the id is hashed). Deleting the newest rows
leaves a valid, shorter chain: pass the head hash recorded elsewhere (a model card, an
MLflow tag) as ``expected_head`` to detect truncation.

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

CLI::

    python -m driftloop.audit.ledger verify [--database-url URL] [--expect-head HASH]
    python -m driftloop.audit.ledger show [--database-url URL] [--subject S] [--kind K] [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

GENESIS_HASH = "0" * 64
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

metadata = sa.MetaData()

audit_ledger = sa.Table(
    "audit_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recorded_at", sa.String(40), nullable=False),  # ISO-8601 UTC text
    sa.Column("kind", sa.String(64), nullable=False, index=True),
    sa.Column("actor", sa.String(250), nullable=False),
    sa.Column("subject", sa.String(500), nullable=False, index=True),
    sa.Column("idempotency_key", sa.String(500), nullable=False, unique=True),
    sa.Column("payload", sa.Text, nullable=False),  # canonical JSON
    sa.Column("input_hashes", sa.Text, nullable=False),  # canonical JSON {name: sha256}
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("row_hash", sa.String(64), nullable=False, unique=True),
)

HASHED_FIELDS = (
    "id",
    "recorded_at",
    "kind",
    "actor",
    "subject",
    "idempotency_key",
    "payload",
    "input_hashes",
    "prev_hash",
)


class LedgerError(RuntimeError):
    """An append could not be completed (e.g. the database stayed locked)."""


# --------------------------------------------------------------------------------------------
# canonical serialisation and hashes


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, UTF-8, no NaN/Infinity (an audit
    record holds null where a number is missing)."""
    try:
        return json.dumps(
            obj,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        )
    except ValueError as err:
        raise ValueError(f"not canonical JSON (NaN or Infinity present?): {err}") from err


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of an object's canonical JSON (e.g. a policy dict or an evaluation summary)."""
    return sha256_bytes(canonical_json(obj).encode("utf-8"))


def compute_row_hash(row: Mapping[str, Any]) -> str:
    """The row hash from the stored column values (``payload``/``input_hashes`` as text)."""
    doc = {name: row[name] for name in HASHED_FIELDS}
    doc["id"] = int(doc["id"])
    return sha256_bytes(canonical_json(doc).encode("utf-8"))


def model_subject(model_name: str, version: int | str) -> str:
    """The ledger subject of a registered model version: ``model:<name>/v<version>``."""
    return f"model:{model_name}/v{version}"


def task_key(dag_id: str, run_id: str, task_id: str, map_index: int = -1, *extra: str) -> str:
    """Idempotency key of a DAG task instance: the same on every retry of that task."""
    parts = [dag_id, run_id, task_id] + ([str(map_index)] if map_index >= 0 else [])
    return "/".join([*parts, *map(str, extra)])


# --------------------------------------------------------------------------------------------
# rows


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    recorded_at: str
    kind: str
    actor: str
    subject: str
    idempotency_key: str
    payload: Any
    input_hashes: dict[str, str]
    prev_hash: str
    row_hash: str
    inserted: bool = field(default=False, compare=False)  # False: an earlier append's row

    @property
    def recorded_at_dt(self) -> datetime:
        return datetime.fromisoformat(self.recorded_at)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("inserted")
        return out

    @classmethod
    def _from_row(cls, row: Mapping[str, Any], inserted: bool = False) -> LedgerEntry:
        return cls(
            id=int(row["id"]),
            recorded_at=row["recorded_at"],
            kind=row["kind"],
            actor=row["actor"],
            subject=row["subject"],
            idempotency_key=row["idempotency_key"],
            payload=json.loads(row["payload"]),
            input_hashes=json.loads(row["input_hashes"]),
            prev_hash=row["prev_hash"],
            row_hash=row["row_hash"],
            inserted=inserted,
        )


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int  # rows checked (up to and including the first bad one)
    first_bad_id: int | None
    reason: str
    head: str = GENESIS_HASH  # row_hash of the last good row

    def __bool__(self) -> bool:
        return self.ok


def engine_for(url: str) -> sa.Engine:
    """An engine for ``url`` with the ledger table created (SQLite: 30 s busy timeout)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    engine = sa.create_engine(url, **kwargs)
    metadata.create_all(engine)
    return engine


def _is_sqlite_busy(err: BaseException) -> bool:
    text = str(getattr(err, "orig", err)).lower()
    return "locked" in text or "busy" in text


class Ledger:
    """The audit ledger in the database of ``engine_or_url``.

    ``create``: create the table when missing (the CLI's ``verify`` does not).
    ``clock``: returns the timestamp of a new row (UTC; tests pin it).
    """

    def __init__(
        self,
        engine_or_url: sa.Engine | str,
        *,
        create: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if isinstance(engine_or_url, str):
            self.engine = engine_for(engine_or_url) if create else _plain_engine(engine_or_url)
        else:
            self.engine = engine_or_url
            if create:
                metadata.create_all(self.engine, tables=[audit_ledger])
        self._clock = clock or (lambda: datetime.now(UTC))

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
                        return LedgerEntry._from_row(existing, inserted=False)
                    head_q = (
                        sa.select(audit_ledger.c.id, audit_ledger.c.row_hash)
                        .order_by(audit_ledger.c.id.desc())
                        .limit(1)
                    )
                    if not locked and self.engine.dialect.name != "sqlite":
                        head_q = head_q.with_for_update()
                    head = conn.execute(head_q).first()
                    row = {
                        "id": 1 if head is None else int(head.id) + 1,
                        "recorded_at": _iso_utc(self._clock()),
                        "kind": kind,
                        "actor": actor,
                        "subject": subject,
                        "idempotency_key": idempotency_key,
                        "payload": payload_text,
                        "input_hashes": hashes_text,
                        "prev_hash": GENESIS_HASH if head is None else head.row_hash,
                    }
                    row["row_hash"] = compute_row_hash(row)
                    conn.execute(sa.insert(audit_ledger).values(**row))
                return LedgerEntry._from_row(row, inserted=True)
            except sa.exc.IntegrityError as err:
                # another writer took this id / predecessor / key first: re-read the head
                last_error = err
            except sa.exc.OperationalError as err:
                if not _is_sqlite_busy(err):
                    raise
                last_error = err
            time.sleep(min(1.0, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise LedgerError(
            f"could not append to the ledger after {MAX_ATTEMPTS} attempts: {last_error}"
        )

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
        """Recompute the chain in id order; name the first row that does not fit."""
        prev_hash, prev_id, rows = GENESIS_HASH, None, 0
        query = (
            sa.select(audit_ledger).order_by(audit_ledger.c.id).execution_options(yield_per=1000)
        )
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                rows += 1
                problem = _row_problem(row, prev_hash, prev_id)
                if problem is not None:
                    return VerifyResult(False, rows, int(row["id"]), problem, prev_hash)
                prev_hash, prev_id = row["row_hash"], int(row["id"])
        if expected_head is not None and expected_head != prev_hash:
            return VerifyResult(
                False,
                rows,
                None,
                f"chain is intact but its head {prev_hash} is not the expected {expected_head} "
                "(newest rows deleted, or rows appended since)",
                prev_hash,
            )
        return VerifyResult(True, rows, None, "", prev_hash)


def _row_problem(row: Mapping[str, Any], prev_hash: str, prev_id: int | None) -> str | None:
    """Why a row does not continue the chain after (prev_id, prev_hash), or None."""
    row_id = int(row["id"])
    try:
        recomputed = compute_row_hash(row)
    except (TypeError, ValueError) as err:
        return f"cannot be hashed: {err}"
    if row["row_hash"] != recomputed:
        return (
            "row_hash does not match the row's content "
            "(a field was changed, or the row was moved to another id)"
        )
    if row["prev_hash"] != prev_hash:
        if prev_id is None:
            return (
                "prev_hash is not the genesis hash although it is the first "
                "row (earlier rows were deleted)"
            )
        return (
            f"prev_hash does not match the row_hash of row {prev_id} "
            "(a row in between was deleted, or rows were altered or reordered)"
        )
    expected_id = 1 if prev_id is None else prev_id + 1
    if row_id != expected_id:
        return f"expected id {expected_id} (a row was deleted)"
    return None


def _plain_engine(url: str) -> sa.Engine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    return sa.create_engine(url, **kwargs)


def _check_text(name: str, value: Any, max_len: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise ValueError(f"{name} is longer than {max_len} characters")


def _iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("the ledger clock must return timezone-aware datetimes")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------------------------
# CLI


def _default_url() -> str:
    from driftloop.config.settings import Settings

    return Settings.from_env().database_url


def _shown_url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_rows(entries: Sequence[LedgerEntry], as_json: bool) -> None:
    if as_json:
        for e in entries:
            print(canonical_json(e.to_dict()))
        return
    header = ("id", "recorded_at", "kind", "actor", "subject", "row_hash", "payload")
    rows = [
        (
            str(e.id),
            e.recorded_at[:19] + "Z",
            e.kind,
            _short(e.actor, 24),
            _short(e.subject, 40),
            e.row_hash[:12],
            _short(canonical_json(e.payload), 80),
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        cells = [
            c.rjust(w) if i == 0 else c.ljust(w)
            for i, (c, w) in enumerate(zip(r[:-1], widths, strict=True))
        ]
        print("  ".join([*cells, r[-1]]).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (default: DRIFTLOOP_DATABASE_URL / driftloop settings)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m driftloop.audit.ledger",
        description="Audit ledger: verify the chain, show rows.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", parents=[common], help="recompute the hash chain")
    p_verify.add_argument(
        "--expect-head", default=None, help="head row_hash recorded elsewhere (detects truncation)"
    )
    p_show = sub.add_parser("show", parents=[common], help="print rows, oldest first")
    p_show.add_argument("--subject", default=None)
    p_show.add_argument("--kind", default=None)
    p_show.add_argument("--limit", type=int, default=50, help="newest N rows (0: all)")
    p_show.add_argument("--json", action="store_true", help="one canonical JSON object a row")
    args = parser.parse_args(argv)

    url = args.database_url or _default_url()
    try:
        ledger = Ledger(url, create=False)
        where = _shown_url(ledger.engine)
        if not ledger.exists():
            print(f"no audit ledger (table {audit_ledger.name}) at {where}", file=sys.stderr)
            return 1
        if args.command == "verify":
            result = ledger.verify(expected_head=args.expect_head)
            if result.ok:
                print(f"ledger OK: {result.rows} rows, head {result.head}")
                return 0
            where_bad = "" if result.first_bad_id is None else f" row {result.first_bad_id}:"
            print(f"ledger TAMPERED:{where_bad} {result.reason}")
            return 1
        entries = ledger.entries(args.subject, args.kind, limit=args.limit or None)
        _print_rows(entries, args.json)
        return 0
    except sa.exc.SQLAlchemyError as err:
        print(f"ledger: database error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
