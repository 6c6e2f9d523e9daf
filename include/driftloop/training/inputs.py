"""The inputs of a training run: the dataset snapshot and the base model, resolved locally.

:func:`prepare_dataset` fetches the dataset (an S3 snapshot through
:func:`driftloop.retrain.snapshot_io.download_dataset`, which checks every file against the
manifest; or a local folder), checks its ``data.yaml`` and writes a copy with an absolute
``path``. :func:`resolve_base` turns ``--base`` into what Ultralytics loads: a model ``.yaml``
(train from scratch; allow-listed by name) or ``.pt`` weights (fine-tune), downloaded from S3
or MLflow when given as a URI and loaded only when their SHA-256 is the one recorded for them
(``--base-sha256``). Bad input raises :class:`InputError` (exit status 2 of the entrypoint).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
_SHA_IN_URI = re.compile(r"/datasets/([0-9a-f]{64})(?:/|$)")


class InputError(ValueError):
    """Bad input: exit status 2 with the message, no traceback."""


@dataclass(frozen=True)
class Dataset:
    root: Path
    data_yaml: Path  # resolved copy with an absolute ``path``
    uri: str
    sha256: str
    nc: int
    names: dict[int, str]
    train_dirs: tuple[Path, ...] = ()


def fetch_dataset(uri: str, work: Path) -> Path:
    """A local folder holding the dataset named by ``uri`` (downloaded when it is on S3)."""
    if uri.startswith("s3://"):
        from driftloop.contracts import storage
        from driftloop.retrain.snapshot_io import download_dataset

        try:
            return download_dataset(storage.s3_client(), uri, work / "dataset")
        except ValueError as err:  # not a snapshot URI, incomplete or corrupt snapshot
            raise InputError(f"--data {uri}: {err}") from err
    if "://" in uri:
        raise InputError(f"--data {uri}: only local folders and s3:// URIs are supported")
    root = Path(uri)
    if not root.is_dir():
        raise InputError(f"--data {uri}: no such folder")
    return root


def dataset_sha256(root: Path, uri: str) -> str:
    """The snapshot's SHA-256: from its ``datasets/{sha}/`` URI, else its manifest, else the
    snapshot hash rule of :mod:`driftloop.retrain.snapshot` applied to the folder: sha256 of
    the sorted ``"<sha256 of file>  <relative path>\\n"`` lines of every file except
    ``manifest.json``, ``requests/`` and Ultralytics' ``*.cache`` files."""
    if match := _SHA_IN_URI.search(uri.rstrip("/") + "/"):
        return match.group(1)
    manifest = root / "manifest.json"
    if manifest.is_file():
        try:
            raw = json.loads(manifest.read_text())
        except ValueError:
            raw = {}
        for key in ("sha256", "dataset_sha256", "content_sha256"):
            value = raw.get(key) if isinstance(raw, dict) else None
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
                return value
    files = {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and path.suffix != ".cache"
    }
    digest = hashlib.sha256()
    for rel in sorted(files):
        if rel != "manifest.json" and not rel.startswith("requests/"):
            digest.update(f"{files[rel]}  {rel}\n".encode())
    return digest.hexdigest()


def prepare_dataset(uri: str, work: Path) -> Dataset:
    """Fetch the dataset, check its ``data.yaml`` and write a copy with an absolute ``path``
    (Ultralytics resolves a relative one against its own datasets folder)."""
    import yaml

    root = fetch_dataset(uri, work).resolve()
    source = root / "data.yaml"
    if not source.is_file():
        raise InputError(f"--data {uri}: no data.yaml in {root}")
    try:
        config = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"--data {uri}: data.yaml is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise InputError(f"--data {uri}: data.yaml must be a mapping")
    missing = [key for key in ("train", "val", "names") if not config.get(key)]
    if missing:
        raise InputError(f"--data {uri}: data.yaml lacks {', '.join(missing)}")
    base = Path(config.get("path") or ".")
    base = base if base.is_absolute() else (root / base).resolve()
    for key in ("train", "val"):
        for entry in config[key] if isinstance(config[key], list) else [config[key]]:
            if not (base / entry).exists():
                raise InputError(f"--data {uri}: data.yaml {key}: {base / entry} does not exist")
    train = config["train"] if isinstance(config["train"], list) else [config["train"]]
    names = config["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else dict(names)
    names = {int(k): str(v) for k, v in names.items()}
    config["path"] = str(base)
    config["names"] = names
    config["nc"] = len(names)
    resolved = work / "data.yaml"
    resolved.write_text(yaml.safe_dump(config, sort_keys=False))
    return Dataset(
        root,
        resolved,
        uri,
        dataset_sha256(root, uri),
        len(names),
        names,
        tuple(base / entry for entry in train),
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_weights(path: Path, expected_sha256: str, base: str) -> Path:
    """``path`` when its SHA-256 is ``expected_sha256``; InputError naming both otherwise.
    Runs before Ultralytics unpickles the file."""
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise InputError(
            f"--base {base}: the weights' SHA-256 is {actual}, not the recorded "
            f"{expected_sha256} (--base-sha256): refusing to load them"
        )
    return path


def resolve_base(base: str, work: Path, sha256: str | None = None) -> tuple[Path | str, str]:
    """``(what Ultralytics loads, kind)``; kind is ``"yaml"`` (from scratch) or ``"weights"``.

    A yaml must be one of :data:`driftloop.training.allowlists.BASE_MODEL_YAMLS` (by name).
    Weights (``.pt``: a path, or an s3:// / MLflow URI) need ``sha256``, the hash the registry
    recorded for them; the file is fetched, hashed and refused unless it matches, before
    anything unpickles it."""
    from driftloop.training.allowlists import BASE_MODEL_YAMLS, DisallowedInput, check_sha256

    lowered = base.lower()
    if lowered.endswith((".yaml", ".yml")):
        if base not in BASE_MODEL_YAMLS:
            raise InputError(
                f"--base {base}: unknown model yaml; the allowed model configs are "
                f"{', '.join(BASE_MODEL_YAMLS)} (Ultralytics' bundled configs, by name)"
            )
        from ultralytics.nn.tasks import yaml_model_load

        try:  # resolves Ultralytics' scaled names too: yolo11n.yaml -> yolo11.yaml, scale n
            config = yaml_model_load(base)
        except Exception as err:  # FileNotFoundError, or whatever the check raises offline
            raise InputError(
                f"--base {base}: unknown model yaml (not an Ultralytics model config in this "
                f"environment): {err}"
            ) from err
        if not config.get("head"):
            raise InputError(f"--base {base}: not a model config (no 'head' section)")
        return base, "yaml"
    if not lowered.endswith(".pt"):
        raise InputError(
            f"--base {base}: unknown base model; expected an allowed model .yaml or weights .pt "
            "(path, s3://, runs:/, models:/ or mlflow-artifacts:/ URI) with --base-sha256"
        )
    if sha256 is None:
        raise InputError(
            f"--base {base}: weights are loaded only with their recorded SHA-256 "
            "(--base-sha256); none was given"
        )
    try:
        check_sha256(sha256, source="--base-sha256")
    except DisallowedInput as err:
        raise InputError(str(err)) from err
    return check_weights(fetch_weights(base, work), sha256, base), "weights"


def fetch_weights(base: str, work: Path) -> Path:
    """The local file of the ``.pt`` weights ``base`` (downloaded from S3 or MLflow). Only
    the store's "not found" is bad input (InputError); any other error is raised as it is."""
    from driftloop.contracts.stores import is_not_found

    dest = work / "base"
    dest.mkdir(parents=True, exist_ok=True)
    if base.startswith("s3://"):
        from botocore.exceptions import ClientError

        from driftloop.contracts import storage

        bucket, key = storage.split_s3_uri(base)
        target = dest / Path(key).name
        try:
            storage.s3_client().download_file(bucket, key, str(target))
        except ClientError as err:
            if not is_not_found(err):
                raise  # a fault of the store, not bad input: the task fails and is retried
            raise InputError(f"--base {base}: no such object: {err}") from err
        return target
    if base.startswith(MLFLOW_SCHEMES):
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=base, dst_path=str(dest)))
        except MlflowException as err:
            if not is_not_found(err):
                raise
            raise InputError(f"--base {base}: not in MLflow: {err}") from err
        if local.is_dir():
            raise InputError(f"--base {base}: names a folder; give the weights file itself")
        return local
    if "://" in base:
        raise InputError(f"--base {base}: unsupported URI scheme (offline: no http downloads)")
    path = Path(base)
    if not path.is_file():
        raise InputError(f"--base {base}: weights file not found (nothing is downloaded)")
    return path.resolve()
