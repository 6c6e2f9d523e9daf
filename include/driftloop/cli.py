"""``driftloop``: one command line for the loop's tools.

    driftloop --version
    driftloop settings [--json]                 the effective DRIFTLOOP_* settings, secrets redacted
    driftloop ledger verify [--expect-head H] [--database-url URL] [--json]
    driftloop ledger show [--subject S] [--kind K] [--limit N] [--json]

With the development package installed (``make venv``: ``tools/``), also ``stack up|down|status|env``,
``demo``, ``synth`` and ``ui-check``. Those register themselves through the entry-point group
:data:`COMMAND_GROUP`: each entry point names a function ``register(subparsers, parents)`` that
adds its subcommand and sets ``handler`` (``args -> exit status``). The production image
installs the runtime package only, so its ``driftloop`` has the runtime subcommands alone.

``--json`` (before or after the subcommand) prints one JSON document on stdout instead of text;
errors go to stderr with a non-zero exit status: 1 a check failed (tampered ledger, no ledger),
2 bad usage or a store that cannot be read.

Heavy imports (SQLAlchemy, the ledger) happen inside the handlers: ``driftloop --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from driftloop import __version__

#: entry-point group of subcommands from other distributions (the dev tooling)
COMMAND_GROUP = "driftloop.commands"

Handler = Callable[[argparse.Namespace], int]


def emit(args: argparse.Namespace, document: Any, text: str | Sequence[str] | None = None) -> None:
    """Print ``document`` as JSON with ``--json``, else ``text`` (a string or lines)."""
    if getattr(args, "json", False):
        print(json.dumps(document, indent=2, sort_keys=True, default=str))
    elif text is not None:
        print(text if isinstance(text, str) else "\n".join(text))


def fail(message: str, status: int = 2) -> int:
    print(f"driftloop: {message}", file=sys.stderr)
    return status


# --------------------------------------------------------------------------- settings


def _settings(args: argparse.Namespace) -> int:
    from driftloop.config.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as err:
        return fail(str(err))
    rows = settings.describe()
    shown = ["-" if row["value"] is None else str(row["value"]) for row in rows]
    width = max(len(row["variable"]) for row in rows)
    value_width = min(max(map(len, shown)), 48)
    emit(
        args,
        {row["variable"]: row["value"] for row in rows},
        [
            f"{row['variable']:<{width}}  {value:<{value_width}}  "
            f"{'set' if row['from_environment'] else 'default':7}  {row['description']}"
            for row, value in zip(rows, shown, strict=True)
        ],
    )
    return 0


# --------------------------------------------------------------------------- ledger


class NoLedger(LookupError):
    """There is no audit ledger at the URL (the only "absent" the CLI accepts)."""


def _ledger(args: argparse.Namespace):
    """The ledger at ``--database-url`` (default: the settings'), never created here."""
    from pathlib import Path

    from driftloop.audit.ledger import Ledger
    from driftloop.config.settings import Settings

    url = args.database_url or Settings.from_env().database_url
    sqlite_file = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    if sqlite_file and sqlite_file != ":memory:" and not Path(sqlite_file).is_file():
        # connecting would create an empty database file where an operator mistyped a path
        raise NoLedger(f"no audit ledger at {url} (no such file)")
    ledger = Ledger(url, create=False)
    if not ledger.exists():
        raise NoLedger(f"no audit ledger at {_where(ledger)}")
    return ledger


def _where(ledger) -> str:
    return ledger.engine.url.render_as_string(hide_password=True)


def _ledger_verify(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    try:
        ledger = _ledger(args)
        where = _where(ledger)
        result = ledger.verify(expected_head=args.expect_head)
    except NoLedger as err:
        emit(args, {"ok": False, "reason": str(err)})
        return fail(str(err), 1)
    except sa.exc.SQLAlchemyError as err:
        return fail(f"ledger: database error: {err}")
    document = {
        "ok": result.ok,
        "rows": result.rows,
        "head": result.head,
        "first_bad_id": result.first_bad_id,
        "reason": result.reason,
        "database": where,
    }
    if result.ok:
        emit(args, document, f"ledger OK: {result.rows} rows, head {result.head}")
        return 0
    where_bad = "" if result.first_bad_id is None else f" row {result.first_bad_id}:"
    emit(args, document, f"ledger TAMPERED:{where_bad} {result.reason}")
    return 1


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _ledger_show(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from driftloop.audit.ledger import canonical_json

    try:
        ledger = _ledger(args)
        where = _where(ledger)
        entries = ledger.entries(args.subject, args.kind, limit=args.limit or None)
    except NoLedger as err:
        return fail(str(err), 1)
    except sa.exc.SQLAlchemyError as err:
        return fail(f"ledger: database error: {err}")
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
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip()
        for r in [header, *rows]
    ]
    emit(args, {"database": where, "entries": [e.to_dict() for e in entries]}, lines)
    return 0


def _register_ledger(sub, parents: list[argparse.ArgumentParser]) -> None:
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url", default=None, help="SQLAlchemy URL (default: DRIFTLOOP_DATABASE_URL)"
    )
    ledger = sub.add_parser(
        "ledger",
        parents=parents,
        help="the audit ledger: verify the hash chain, show rows",
        description="The hash-chained audit ledger (driftloop.audit.ledger).",
    )
    actions = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", parents=[*parents, database], help="recompute the hash chain"
    )
    verify.add_argument(
        "--expect-head", default=None, help="head row_hash recorded elsewhere (detects truncation)"
    )
    verify.set_defaults(handler=_ledger_verify)
    show = actions.add_parser("show", parents=[*parents, database], help="rows, oldest first")
    show.add_argument("--subject", default=None)
    show.add_argument("--kind", default=None)
    show.add_argument("--limit", type=int, default=50, help="newest N rows (0: all)")
    show.set_defaults(handler=_ledger_show)


# --------------------------------------------------------------------------- the parser tree


def _json_parent() -> argparse.ArgumentParser:
    # SUPPRESS: a subcommand's --json only sets the flag when given, so `driftloop --json X`
    # and `driftloop X --json` both work.
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document"
    )
    return parent


def _plugin_commands() -> list[tuple[str, Callable[..., None]]]:
    from importlib.metadata import entry_points

    found = []
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        try:
            found.append((entry.name, entry.load()))
        except Exception as err:  # a broken dev install must not take the runtime commands down
            print(
                f"driftloop: skipping subcommand {entry.name!r} ({entry.value}): "
                f"{type(err).__name__}: {err}",
                file=sys.stderr,
            )
    return found


def build_parser(*, plugins: bool = True) -> argparse.ArgumentParser:
    """The whole command tree: the runtime subcommands, then those of :data:`COMMAND_GROUP`."""
    parser = argparse.ArgumentParser(
        prog="driftloop",
        description="Drift monitoring, retraining and gated promotion of a YOLO detector.",
    )
    parser.add_argument("--version", action="version", version=f"driftloop {__version__}")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parents = [_json_parent()]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    settings = sub.add_parser(
        "settings", parents=parents, help="the effective DRIFTLOOP_* settings (secrets redacted)"
    )
    settings.set_defaults(handler=_settings)
    _register_ledger(sub, parents)
    if plugins:
        for _name, register in _plugin_commands():
            register(sub, parents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``driftloop`` console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


def ledger_main(argv: Sequence[str] | None = None) -> int:
    """``python -m driftloop.ledger verify|show …``: ``driftloop ledger …`` under its old name
    (the training image, runbooks and the README call it so); no dev subcommands loaded."""
    args = build_parser(plugins=False).parse_args(
        ["ledger", *(sys.argv[1:] if argv is None else argv)]
    )
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
