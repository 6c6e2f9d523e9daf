"""The ledger's guards around an append: the anchors of committed rows, and the head row a new
row chains onto (part of :class:`driftloop.audit.ledger.Ledger`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from driftloop.audit.anchor import AnchorStore
from driftloop.audit.chain import audit_ledger, chain_problem, compute_row_hash, mac_matches

#: before an append, the newest rows this many deep are checked for a missing anchor
ANCHOR_REPAIR_WINDOW = 64


class LedgerError(RuntimeError):
    """An append could not be completed (the database stayed locked, the head row fails its
    check, a keyed ledger without the key)."""


class AnchorError(LedgerError):
    """A committed row's anchor could not be written (the row stays; the next append or
    ``driftloop ledger anchor`` writes the anchor)."""


class AnchoringMixin:
    engine: sa.Engine
    anchors: AnchorStore | None
    _key: bytes | None

    def _check_head(self, head: Mapping[str, Any] | None) -> None:
        """Refuse to chain onto a head row that fails its own hash or MAC, and unkeyed
        appends to a keyed ledger."""
        if head is None:
            return
        head_id = int(head["id"])
        if compute_row_hash(head) != head["row_hash"]:
            raise LedgerError(
                f"refusing to append: head row {head_id} does not match its row_hash "
                "(tampered; run `driftloop ledger verify`)"
            )
        head_mac = head.get("row_mac")
        if head_mac is not None and self._key is None:
            raise LedgerError(
                "refusing an unkeyed append: this ledger's rows carry MACs; set "
                "DRIFTLOOP_LEDGER_HMAC_KEY"
            )
        key = self._key
        if (
            key is not None
            and head_mac is not None
            and not mac_matches(key, head["row_hash"], head_mac)
        ):
            raise LedgerError(
                f"refusing to append: head row {head_id} fails its MAC (rewritten, or "
                "another key; run `driftloop ledger verify`)"
            )

    # -- anchors ---------------------------------------------------------------------------

    def _anchor(self, row: Mapping[str, Any]) -> None:
        if self.anchors is None:
            return
        try:
            self.anchors.put(row)
        except Exception as err:
            raise AnchorError(
                f"ledger row {row['id']} is committed but its anchor "
                f"{self.anchors.uri(row['id'])} could not be written ({type(err).__name__}: "
                f"{err}); the next append or `driftloop ledger anchor` writes it"
            ) from err

    def _rows_from(self, first_id: int) -> list[Mapping[str, Any]]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(audit_ledger)
                    .where(audit_ledger.c.id >= first_id)
                    .order_by(audit_ledger.c.id)
                ).mappings()
            )

    def _anchor_recent_rows(self, window: int = ANCHOR_REPAIR_WINDOW) -> list[int]:
        """Write the missing anchors of the newest ``window`` rows; returns their ids."""
        if self.anchors is None:
            return []
        with self.engine.connect() as conn:
            head_id = conn.execute(sa.select(sa.func.max(audit_ledger.c.id))).scalar() or 0
        if head_id == 0:
            return []
        after = max(0, head_id - window)
        present = {a.id for a in self.anchors.listed(after_id=after)}
        if all(i in present for i in range(after + 1, head_id + 1)):
            return []
        return self._anchor_rows(self._rows_from(max(1, after)), present)

    def _anchor_rows(self, rows: list[Mapping[str, Any]], present: set[int]) -> list[int]:
        """Anchor the rows of ``rows`` not in ``present`` — each only after it proves intact
        (its hash, its link to the row before, its MAC): anchoring a rewritten row would
        make the rewrite look genuine."""
        written = []
        prev: Mapping[str, Any] | None = None
        for row in rows:
            row_id = int(row["id"])
            if row_id not in present:
                problem = None
                if prev is not None:
                    problem = chain_problem(row, prev["row_hash"], int(prev["id"]))
                elif compute_row_hash(row) != row["row_hash"]:
                    problem = "row_hash does not match the row's content"
                if problem is None and row.get("row_mac") is not None:
                    if self._key is None:
                        problem = "it is keyed and no key was given"
                    elif not mac_matches(self._key, row["row_hash"], row["row_mac"]):
                        problem = "its row_mac is wrong"
                if problem is not None:
                    raise LedgerError(
                        f"refusing to anchor row {row_id}: {problem} "
                        "(run `driftloop ledger verify`)"
                    )
                self._anchor(row)
                written.append(row_id)
            prev = row
        return written

    def anchor_missing(self) -> list[int]:
        """Write the anchor of every intact row that has none (the repair after a failed
        anchor write, or the first anchoring of a ledger older than anchors)."""
        if self.anchors is None:
            raise LedgerError("no anchor store configured (DRIFTLOOP_LEDGER_ANCHOR_BUCKET)")
        present = {a.id for a in self.anchors.listed()}
        return self._anchor_rows(self._rows_from(1), present)
