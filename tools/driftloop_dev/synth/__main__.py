"""``python -m driftloop_dev.synth`` / ``driftloop-synth``: write a synthetic world to S3.

    python -m driftloop_dev.synth --scenario abrupt --days 42 --drift-day 28 --rows-per-day 2000
    python -m driftloop_dev.synth --scenario brightness-shift --magnitude 0.2 --days 42
    python -m driftloop_dev.synth --scenario abrupt --days 42 --frames-per-day 500   # + frames

S3 comes from boto3's environment (``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID`` …), the
bucket from ``--bucket`` or ``DRIFTLOOP_BUCKET``. The ground truth goes to stdout as JSON,
a one-line summary to stderr. ``--out-dir`` writes to a local directory instead of S3.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from driftloop_dev.synth.scenarios import SCENARIOS


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from err


def yesterday_utc() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


DESCRIPTION = (
    "Write a deterministic synthetic world (inference logs + labeled frames) "
    "to S3 and print its ground truth as JSON."
)


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="driftloop-synth", description=DESCRIPTION))


def register(subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """``driftloop synth …`` (entry point of the ``driftloop.commands`` group). The ground truth
    is JSON on stdout either way; ``--json`` is accepted for symmetry."""
    add_arguments(
        subparsers.add_parser(
            "synth",
            parents=parents,
            help="write a synthetic world to S3 (development)",
            description=DESCRIPTION,
        )
    )


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The generator's options, shared by ``driftloop-synth`` and ``driftloop synth``."""
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument(
        "--days", type=int, required=True, help="number of days, ending at --end-date"
    )
    parser.add_argument(
        "--drift-day",
        type=int,
        default=None,
        help="0-based index of the first drifted day (default: 14 days before the end)",
    )
    parser.add_argument("--rows-per-day", type=int, default=1000)
    parser.add_argument(
        "--end-date", type=_date, default=None, help="last day, YYYY-MM-DD (default: yesterday UTC)"
    )
    parser.add_argument("--labeled-per-day", type=int, default=8)
    parser.add_argument("--files-per-day", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--magnitude",
        type=float,
        default=None,
        help="size of the drift in standard deviations (brightness-shift only, required there)",
    )
    parser.add_argument("--image-size", type=int, default=160, help="labeled frame size in pixels")
    parser.add_argument(
        "--camera-looks",
        action="store_true",
        help="render labeled frames through their camera (brightness offset, tint); off by "
        "default: the promotion floors were calibrated on frames without",
    )
    parser.add_argument(
        "--frames-per-day",
        type=int,
        default=0,
        help="traffic frames a day for `driftloop serve-batch` (frames/dt=D/; the first "
        "--labeled-per-day are the labeled frames); default 0: none",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--bucket", default=None, help="default: DRIFTLOOP_BUCKET or 'driftloop'")
    target.add_argument(
        "--out-dir", default=None, help="write to this local directory instead of S3"
    )
    parser.add_argument(
        "--create-bucket", action="store_true", help="create the bucket if it does not exist"
    )
    parser.set_defaults(handler=run, parser=parser)
    return parser


def ensure_bucket(s3, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = s3.meta.region_name
    if region and region != "us-east-1":
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    else:
        s3.create_bucket(Bucket=bucket)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:

    from driftloop_dev.synth.sinks import DirectorySink, S3Sink
    from driftloop_dev.synth.world import generate_world

    if args.out_dir is not None:
        sink = DirectorySink(args.out_dir)
        where = args.out_dir
    else:
        from driftloop.config.settings import Settings
        from driftloop.contracts import storage

        bucket = args.bucket or Settings.from_env().bucket
        s3 = storage.s3_client()
        if args.create_bucket:
            ensure_bucket(s3, bucket)
        sink = S3Sink(s3, bucket)
        where = f"s3://{bucket}"

    started = time.perf_counter()
    try:
        truth = generate_world(
            sink,
            args.scenario,
            days=args.days,
            drift_day=args.drift_day,
            end_date=args.end_date or yesterday_utc(),
            rows_per_day=args.rows_per_day,
            labeled_per_day=args.labeled_per_day,
            files_per_day=args.files_per_day,
            seed=args.seed,
            image_size=args.image_size,
            magnitude=args.magnitude,
            frames_per_day=args.frames_per_day,
            camera_looks=args.camera_looks,
        )
    except ValueError as err:
        args.parser.error(str(err))  # exits with status 2
    print(truth.to_json())
    print(
        f"driftloop-synth: {args.scenario} {truth.start_date}..{truth.end_date} "
        f"({truth.days} days x {args.rows_per_day} rows) -> {where} "
        f"in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
