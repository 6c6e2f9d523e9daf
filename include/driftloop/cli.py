"""``driftloop``: one command line for the loop's tools.

    driftloop --version
    driftloop settings [--json]                 the effective DRIFTLOOP_* settings, secrets redacted
    driftloop ledger verify [--expect-head H] [--database-url URL] [--anchor-bucket B] [--json]
    driftloop ledger show [--subject S] [--kind K] [--limit N] [--json]
    driftloop ledger anchor [--database-url URL] [--anchor-bucket B]   write missing anchors
    driftloop ledger migrate [--database-url URL]         schema to head (Alembic)
    driftloop ledger grant-app-role ROLE [--database-url URL]   PostgreSQL: INSERT+SELECT only
    driftloop drift compare --reference PATH… --current PATH… [--columns spec.yaml]
                            [--policy drift_policy.yaml] [--history levels.json] [--json]
    driftloop serve-batch --day YYYY-MM-DD [--bucket B] [--threads N] [--json]
                            score a day of frames as serving does (driftloop.serving)
    driftloop labels import --batch-day D --export FILE [--day D]   Label Studio export -> labeled/

``verify`` and ``anchor`` take the MAC key from ``DRIFTLOOP_LEDGER_HMAC_KEY`` only (never an
argument: it would show in ``ps`` and the shell history) and the anchor bucket from
``DRIFTLOOP_LEDGER_ANCHOR_BUCKET`` unless ``--anchor-bucket`` says otherwise.

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


def _ledger(args: argparse.Namespace, *, keyed: bool = False):
    """The ledger at ``--database-url`` (default: the settings'), never created here;
    ``keyed``: with the settings' MAC key and anchor store (verify, anchor)."""
    from pathlib import Path

    from driftloop.audit.ledger import Ledger
    from driftloop.audit.wiring import ledger_for
    from driftloop.config.settings import Settings
    from driftloop.contracts.storage import s3_client

    settings = Settings.from_env()
    url = args.database_url or settings.database_url
    sqlite_file = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    if sqlite_file and sqlite_file != ":memory:" and not Path(sqlite_file).is_file():
        # connecting would create an empty database file where an operator mistyped a path
        raise NoLedger(f"no audit ledger at {url} (no such file)")
    if keyed:
        overrides = {"database_url": url}
        if getattr(args, "anchor_bucket", None):
            overrides["ledger_anchor_bucket"] = args.anchor_bucket
        # an operator's command: boto3's environment, never a task's Airflow connection (a
        # shell inside a worker may still carry the AIRFLOW_CTX_* of the task that spawned it)
        ledger = ledger_for(settings.model_copy(update=overrides), s3=s3_client(), create=False)
    else:
        ledger = Ledger(url, create=False)
    if not ledger.exists():
        raise NoLedger(f"no audit ledger at {_where(ledger)}")
    return ledger


def _where(ledger) -> str:
    return ledger.engine.url.render_as_string(hide_password=True)


def _store_errors():
    """Errors of the stores a ledger command reads: the database, S3, the configuration."""
    import botocore.exceptions
    import sqlalchemy as sa

    from driftloop.audit.ledger import LedgerError
    from driftloop.config.settings import SettingsError

    return (
        sa.exc.SQLAlchemyError,
        botocore.exceptions.BotoCoreError,
        botocore.exceptions.ClientError,
        LedgerError,
        SettingsError,
    )


def _ledger_verify(args: argparse.Namespace) -> int:
    try:
        ledger = _ledger(args, keyed=True)
        where = _where(ledger)
        result = ledger.verify(expected_head=args.expect_head)
    except NoLedger as err:
        emit(args, {"ok": False, "reason": str(err)})
        return fail(str(err), 1)
    except _store_errors() as err:
        return fail(f"ledger: {type(err).__name__}: {err}")
    document = {**result.to_dict(), "database": where, "notes": result.notes()}
    if ledger.anchors is not None:
        document["anchor_prefix"] = f"s3://{ledger.anchors.bucket}/{ledger.anchors.prefix}"
    checks = f"  MACs checked: {result.macs_checked} of {result.rows} rows; anchors checked: " + (
        "none (no anchor bucket)" if result.anchors is None else str(result.anchors)
    )
    notes = [f"  note: {note}" for note in result.notes()]
    if result.ok:
        emit(
            args,
            document,
            [f"ledger OK: {result.rows} rows, head {result.head}", checks, *notes],
        )
        return 0
    where_bad = "" if result.first_bad_id is None else f" row {result.first_bad_id}:"
    more = [
        f"  also: {'' if i is None else f'row {i}: '}{reason}"
        for i, reason in result.problems[1:10]
    ]
    emit(args, document, [f"ledger TAMPERED:{where_bad} {result.reason}", *more, checks, *notes])
    return 1


def _ledger_anchor(args: argparse.Namespace) -> int:
    try:
        ledger = _ledger(args, keyed=True)
        if ledger.anchors is None:
            return fail("no anchor bucket: set DRIFTLOOP_LEDGER_ANCHOR_BUCKET or --anchor-bucket")
        written = ledger.anchor_missing()
    except NoLedger as err:
        return fail(str(err), 1)
    except _store_errors() as err:
        return fail(f"ledger: {type(err).__name__}: {err}", 1)
    span = f"rows {written[0]}..{written[-1]}" if written else "none missing"
    emit(
        args,
        {"written": written, "database": _where(ledger)},
        f"anchors written: {len(written)} ({span})",
    )
    return 0


def _ledger_migrate(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from driftloop.audit.schema import create_engine, current_revision, upgrade
    from driftloop.config.settings import Settings

    url = args.database_url or Settings.from_env().database_url
    try:
        engine = create_engine(url)
        before = current_revision(engine)
        after = upgrade(engine)
    except sa.exc.SQLAlchemyError as err:
        return fail(f"migrate: database error: {err}")
    where = engine.url.render_as_string(hide_password=True)
    emit(
        args,
        {"database": where, "from": before, "to": after},
        f"{where}: schema {before or '(none)'} -> {after}",
    )
    return 0


def _ledger_grant(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from driftloop.audit.schema import create_engine, grant_app_role
    from driftloop.config.settings import Settings

    url = args.database_url or Settings.from_env().database_url
    try:
        statements = grant_app_role(create_engine(url), args.role)
    except (ValueError, LookupError) as err:
        return fail(f"grant-app-role: {err}")
    except sa.exc.SQLAlchemyError as err:
        return fail(f"grant-app-role: database error: {err}")
    emit(args, {"role": args.role, "statements": statements}, statements)
    return 0


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
    verify.add_argument(
        "--anchor-bucket",
        default=None,
        help="bucket of the anchors (default: DRIFTLOOP_LEDGER_ANCHOR_BUCKET)",
    )
    verify.set_defaults(handler=_ledger_verify)
    anchor = actions.add_parser(
        "anchor",
        parents=[*parents, database],
        help="write the missing S3 anchors of intact rows (after a failed anchor write)",
    )
    anchor.add_argument("--anchor-bucket", default=None)
    anchor.set_defaults(handler=_ledger_anchor)
    migrate = actions.add_parser(
        "migrate",
        parents=[*parents, database],
        help="migrate the ledger and drift history tables to the newest schema (Alembic)",
    )
    migrate.set_defaults(handler=_ledger_migrate)
    grant = actions.add_parser(
        "grant-app-role",
        parents=[*parents, database],
        help="PostgreSQL: let ROLE only INSERT and SELECT the ledger (run as the table owner)",
    )
    grant.add_argument("role", metavar="ROLE")
    grant.set_defaults(handler=_ledger_grant)
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
    from driftloop.drift.command import register_drift
    from driftloop.labeling.command import register_labels
    from driftloop.serving.command import register_serve_batch

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
    register_drift(sub, parents)
    register_serve_batch(sub, parents)
    register_labels(sub, parents)
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
