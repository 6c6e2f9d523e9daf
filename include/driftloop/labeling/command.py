"""``driftloop labels import``: a Label Studio export of a labeling batch → a labeled day.

    driftloop labels import --batch-day YYYY-MM-DD --export FILE [--day YYYY-MM-DD]
                            [--bucket B] [--json]

S3 comes from boto3's environment, the bucket from ``--bucket`` or ``DRIFTLOOP_BUCKET``. What
is checked and written: :mod:`driftloop.labeling.imports`. Exit status 0 imported (or the
same labels were already imported), 1 the export was refused (a task not of the batch, an
unknown label, a box outside the image …, named by its task id) or the day is finished with
other labels, 2 bad usage or a store that cannot be read. Heavy imports happen inside the
handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from driftloop.cli import emit, fail
from driftloop.serving.command import _day


def _labels_import(args: argparse.Namespace) -> int:
    import botocore.exceptions

    from driftloop.config.settings import Settings, SettingsError
    from driftloop.contracts.storage import WriteOnceViolation, s3_client
    from driftloop.labeling.imports import ExportError, ImportRefused, import_export

    try:
        bucket = args.bucket or Settings.from_env().bucket
    except SettingsError as err:
        return fail(str(err))
    try:
        export = Path(args.export).read_bytes()
    except OSError as err:
        return fail(f"labels import: cannot read {args.export}: {err.strerror or err}")
    try:
        summary = import_export(s3_client(), bucket, export, args.batch_day, day=args.day)
    except (ExportError, ImportRefused, WriteOnceViolation) as err:
        return fail(f"labels import: {args.export}: {err}", 1)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        return fail(f"labels import: S3: {type(err).__name__}: {err}")
    again = " (already imported: nothing written)" if summary.get("already_imported") else ""
    emit(
        args,
        summary,
        [
            f"imported {summary['frames']} labeled frames of {summary['batch']} into "
            f"{summary['labeled']}{again}",
            f"  skipped {len(summary['skipped_tasks'])} tasks without a finished annotation",
        ],
    )
    return 0


def register_labels(sub, parents: list[argparse.ArgumentParser]) -> None:
    labels = sub.add_parser(
        "labels",
        parents=parents,
        help="labels from the labelers: import a Label Studio export of a labeling batch",
        description="Labeled frames coming back from the labeling queue (driftloop.labeling).",
    )
    actions = labels.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    imports = actions.add_parser(
        "import",
        parents=parents,
        help="a Label Studio JSON export of labeling/DAY/ -> labeled/dt=DAY/ (write-once)",
    )
    imports.add_argument(
        "--batch-day", type=_day, required=True, help="the batch's day: labeling/YYYY-MM-DD/"
    )
    imports.add_argument(
        "--export", required=True, help="the export file (Label Studio: Export → JSON)"
    )
    imports.add_argument(
        "--day", type=_day, default=None, help="labeled/dt=DAY/ (default: the batch's day)"
    )
    imports.add_argument("--bucket", default=None, help="default: DRIFTLOOP_BUCKET")
    imports.set_defaults(handler=_labels_import)
