"""Verification of the audit ledger: the hash chain, the row MACs and the external anchors.

One pass over the rows in id order checks each row's hash and its link to the previous row
(:func:`driftloop.audit.chain.chain_problem`) and, with the key, its MAC; then the anchors in
S3 are matched against the rows. Every problem is collected with the row it concerns; the
first (lowest id) is the verdict's ``first_bad_id``/``reason``:

* a row rewritten and the chain recomputed by someone without the key: its MAC is wrong;
* a row whose MAC was removed after keyed rows: "MAC removed" (legacy rows come first);
* a row deleted, newest ones included: its anchor exists without the row;
* a row rewritten together with its MAC (a key leak): its anchor holds the old hash;
* a row without an anchor after the first anchored row: a failed anchor write not yet
  repaired (``driftloop ledger anchor``).

Without a key, keyed rows cannot be checked: that is a problem, not a pass.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from driftloop.audit.anchor import AnchorStore
from driftloop.audit.chain import (
    GENESIS_HASH,
    VerifyResult,
    audit_ledger,
    chain_problem,
    mac_matches,
)

#: problems kept in a result (the first one decides; the rest help an investigation)
MAX_PROBLEMS = 100


def ledger_columns(conn: sa.Connection) -> list[sa.Column]:
    """The ledger's columns that exist in this database (``row_mac`` is missing before
    migration 0002: a database verified without being migrated)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(audit_ledger.name)}
    return [c for c in audit_ledger.c if c.name in present]


def verify_ledger(
    engine: sa.Engine,
    *,
    key: bytes | None,
    anchors: AnchorStore | None,
    expected_head: str | None = None,
) -> VerifyResult:
    problems: list[tuple[int | None, str]] = []
    prev_hash, prev_id, rows = GENESIS_HASH, None, 0
    chain_head, chain_head_id, chain_broken = GENESIS_HASH, 0, False
    unkeyed: list[int] = []
    first_keyed: int | None = None
    macs_checked = 0
    # id -> the anchored fields, for the anchor comparison (ids are unique)
    anchored_fields: dict[int, dict[str, Any]] = {}
    with engine.connect() as conn:
        query = (
            sa.select(*ledger_columns(conn))
            .order_by(audit_ledger.c.id)
            .execution_options(yield_per=1000)
        )
        for row in conn.execute(query).mappings():
            rows += 1
            row_id = int(row["id"])
            problem = chain_problem(row, prev_hash, prev_id)
            if problem is not None:
                problems.append((row_id, problem))
                chain_broken = True
            elif not chain_broken:
                chain_head, chain_head_id = row["row_hash"], row_id
            row_mac = row.get("row_mac")
            if row_mac is None:
                if first_keyed is None:
                    unkeyed.append(row_id)
                else:
                    problems.append(
                        (
                            row_id,
                            f"row_mac is missing although row {first_keyed} before it is keyed "
                            "(the MAC was removed, or the row was written without the key)",
                        )
                    )
            else:
                first_keyed = row_id if first_keyed is None else first_keyed
                if key is not None:
                    macs_checked += 1
                    if not mac_matches(key, row["row_hash"], row_mac):
                        problems.append(
                            (
                                row_id,
                                "row_mac does not match the row's hash under the ledger key "
                                "(the row was rewritten and the chain recomputed)",
                            )
                        )
            anchored_fields[row_id] = {
                "id": row_id,
                "recorded_at": row["recorded_at"],
                "row_hash": row["row_hash"],
                "row_mac": row_mac,
            }
            prev_hash, prev_id = row["row_hash"], row_id
    head_id = prev_id or 0
    if first_keyed is not None and key is None:
        problems.append(
            (
                None,
                "rows carry MACs but no ledger key was given (DRIFTLOOP_LEDGER_HMAC_KEY): "
                "a rewritten ledger cannot be told from a genuine one",
            )
        )
    anchors_checked, unanchored = None, None
    if anchors is not None:
        anchors_checked, unanchored = _check_anchors(anchors, anchored_fields, head_id, problems)
    if expected_head is not None and expected_head != prev_hash:
        problems.append(
            (
                None,
                f"the head {prev_hash} is not the expected {expected_head} "
                "(newest rows deleted, or rows appended since)",
            )
        )
    problems.sort(key=lambda p: (p[0] is None, p[0] or 0))
    first_id, reason = problems[0] if problems else (None, "")
    return VerifyResult(
        ok=not problems,
        rows=rows,
        first_bad_id=first_id,
        reason=reason,
        head=chain_head if chain_broken else prev_hash,
        head_id=chain_head_id if chain_broken else head_id,
        problems=tuple(problems[:MAX_PROBLEMS]),
        unkeyed=(unkeyed[0], unkeyed[-1]) if unkeyed else None,
        macs_checked=macs_checked,
        anchors=anchors_checked,
        unanchored=unanchored,
    )


def _check_anchors(
    anchors: AnchorStore,
    rows: dict[int, dict[str, Any]],
    head_id: int,
    problems: list[tuple[int | None, str]],
) -> tuple[int, tuple[int, int] | None]:
    """Match every anchor with its row; returns (anchors seen, unanchored legacy span)."""
    seen: set[int] = set()
    for listed in anchors.listed():
        seen.add(listed.id)
        row = rows.get(listed.id)
        if row is None:
            where = "after the head" if listed.id > head_id else "inside the chain"
            problems.append(
                (
                    listed.id,
                    f"row {listed.id} deleted (anchor {anchors.uri(listed.id)} exists, "
                    f"{where}: the ledger ends at row {head_id})",
                )
            )
        elif not anchors.matches(listed, row):
            problems.append(
                (
                    listed.id,
                    f"row {listed.id} differs from its anchor {anchors.uri(listed.id)} "
                    "(row_hash, row_mac or recorded_at rewritten)",
                )
            )
    if not seen:
        return 0, ((1, head_id) if head_id else None)
    first_anchor = min(seen)
    unanchored = (min(rows), first_anchor - 1) if rows and min(rows) < first_anchor else None
    for row_id in sorted(rows):
        if row_id > first_anchor and row_id not in seen:
            problems.append(
                (
                    row_id,
                    f"row {row_id} has no anchor (its anchor write failed or the anchor was "
                    "removed; `driftloop ledger anchor` writes missing anchors of intact rows)",
                )
            )
    return len(seen), unanchored
