"""``driftloop serve-batch --day D``: the reference batch scorer from the command line.

S3 comes from boto3's environment, the bucket from ``--bucket`` or ``DRIFTLOOP_BUCKET``, the
MLflow server and the registered model from the settings (``DRIFTLOOP_MLFLOW_TRACKING_URI`` or
``MLFLOW_TRACKING_URI``, ``DRIFTLOOP_REGISTERED_MODEL``). Exit status 0 served, 1 the day was
already served or no frame could be served, 2 bad usage or a store/registry that cannot be
read. Heavy imports happen inside the handler.
"""

from __future__ import annotations

import argparse
from datetime import date

from driftloop.cli import emit, fail


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from err


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"threads must be an integer >= 1, got {text!r}")
    return value


def _serve_batch(args: argparse.Namespace) -> int:
    import logging

    import botocore.exceptions
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from driftloop.config.settings import Settings, SettingsError
    from driftloop.contracts.storage import s3_client
    from driftloop.serving.batch import DayAlreadyServed, serve_day
    from driftloop.serving.models import ModelStore

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        return fail(str(err))
    if not settings.mlflow_tracking_uri:
        return fail("serve-batch: no MLflow server: set DRIFTLOOP_MLFLOW_TRACKING_URI")
    bucket = args.bucket or settings.bucket
    client = MlflowClient(settings.mlflow_tracking_uri)
    try:
        with ModelStore(
            client,
            settings.registered_model,
            tracking_uri=settings.mlflow_tracking_uri,
            threads=args.threads,
        ) as store:
            summary = serve_day(s3_client(), bucket, args.day, store)
    except DayAlreadyServed as err:
        return fail(f"serve-batch: {err}", 1)
    except RuntimeError as err:
        return fail(f"serve-batch: {err}", 1)
    except (ValueError, LookupError, FileNotFoundError) as err:
        return fail(f"serve-batch: {err}")
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        return fail(f"serve-batch: S3: {type(err).__name__}: {err}")
    except MlflowException as err:
        return fail(f"serve-batch: MLflow: {err}")
    models = [
        f"  v{v} {m['role']}: {m['scored']} scored, {m['served']} served, {m['errors']} errors, "
        f"p95 {m['latency_p95_ms']} ms"
        for v, m in summary["models"].items()
    ]
    emit(
        args,
        summary,
        [
            f"served {summary['day']}: {summary['served']}/{summary['frames']} frames, "
            f"{summary['paired']} paired, stage {summary['stage']} (sequence "
            f"{summary['sequence']}), {summary['frames_per_s']} frames/s",
            *models,
            *([f"  note: {summary['note']}"] if summary["note"] else []),
            f"  wrote s3://{bucket}/{summary['keys']['inference']}",
            f"        s3://{bucket}/{summary['keys']['serving']}",
        ],
    )
    return 0


def register_serve_batch(sub, parents: list[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve-batch",
        parents=parents,
        help="score a day of frames as serving does (routing document, aliases, ONNX Runtime)",
        description=(
            "The reference batch scorer (driftloop.serving): score frames/dt=DAY/ with the "
            "models the routing document and the MLflow aliases name, and write the day's "
            "inference log, serving records and _SUCCESS. A day is served once."
        ),
    )
    parser.add_argument("--day", type=_day, required=True, help="YYYY-MM-DD (UTC)")
    parser.add_argument("--bucket", default=None, help="default: DRIFTLOOP_BUCKET")
    parser.add_argument(
        "--threads", type=_threads, default=1, help="ONNX Runtime threads per model (default 1)"
    )
    parser.set_defaults(handler=_serve_batch)
