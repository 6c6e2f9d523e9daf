"""What a store's "does not exist" looks like — the only error that may mean *absent*.

A decision that reads a store (is there a champion? which versions hold an alias? is this
object already written?) treats only the store's own not-found answer as absence. Anything
else — a 500, a reset connection, a timeout, a permission error — is raised, so the task fails
and Airflow retries it, instead of deciding on a picture of the world that a fault made up
(no champion → the floors alone promote; no protected alias → retention deletes the champion).

One place decides what "not found" is for each store; everything else calls
:func:`is_not_found` or :func:`absent_if_not_found`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: S3 error codes that mean the object (or bucket) is not there
S3_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchVersion"})
#: MLflow's error code for an entity (experiment, run, registered model, version) that does not exist
MLFLOW_NOT_FOUND_CODE = "RESOURCE_DOES_NOT_EXIST"


def is_not_found(err: BaseException) -> bool:
    """True only when ``err`` is a store's answer that the thing asked for does not exist:
    MLflow's ``RESOURCE_DOES_NOT_EXIST`` or S3's 404 / NoSuchKey / NoSuchBucket."""
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:  # botocore ClientError
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in S3_NOT_FOUND_CODES or (not code and status == 404)
    error_code = getattr(err, "error_code", None)  # mlflow.exceptions.MlflowException
    return error_code == MLFLOW_NOT_FOUND_CODE


def absent_if_not_found(read: Callable[[], T]) -> T | None:
    """``read()``, or None when the store says the thing does not exist; every other error
    is raised (fail closed)."""
    try:
        return read()
    except Exception as err:
        if is_not_found(err):
            return None
        raise
