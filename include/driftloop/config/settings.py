"""Runtime settings: every ``DRIFTLOOP_*`` environment variable the runtime reads, in one model.

The embedded stack (``driftloop_dev.stack``) exports these into every process it starts; in
production ``docker-compose.yaml`` (or the Helm values) set them. A field ``name`` is read from
``DRIFTLOOP_<NAME>``; an unset or empty variable means the default. A bad value fails with an
error naming the variable (:class:`SettingsError`). ``driftloop settings`` prints the
effective values, secrets redacted.

S3 credentials never come from here: tasks use the Airflow connection named by
``aws_conn_id``, command-line tools use boto3's own environment (``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID`` …).

A plain pydantic model, not pydantic-settings: DAG files import this at parse time, Airflow has
already loaded pydantic there, and pydantic-settings would add ~45 ms (290 ms cold) to every
parse; reading the variables by hand also lets the error name the variable, not the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

CONFIG_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = CONFIG_DIR.parent
REPO_ROOT = PACKAGE_DIR.parents[1]
DEFAULT_POLICY_PATH = CONFIG_DIR / "drift_policy.yaml"
DEFAULT_PROMOTION_POLICY_PATH = CONFIG_DIR / "promotion_policy.yaml"
#: the local training backend's interpreter: the training virtualenv of a checkout (make train-env)
DEFAULT_TRAINING_PYTHON = REPO_ROOT / ".venv-train" / "bin" / "python"
ENV_PREFIX = "DRIFTLOOP_"
TrainingBackend = Literal["local", "kubernetes"]
TRAINING_BACKENDS: tuple[str, ...] = get_args(TrainingBackend)

_URL_CREDENTIALS = re.compile(r"(://[^/@\s:]+:)[^/@\s]+@")


class SettingsError(ValueError):
    """A ``DRIFTLOOP_*`` variable has a bad value; the message names the variable. (Keywords
    given to ``Settings(...)`` directly fail with pydantic's ValidationError, naming the field.)"""


def env_var(field_name: str) -> str:
    """The environment variable of a :class:`Settings` field: ``DRIFTLOOP_<NAME>``."""
    return ENV_PREFIX + field_name.upper()


def redact(value: Any) -> Any:
    """``value`` with the password of a URL (``scheme://user:password@host``) masked."""
    return _URL_CREDENTIALS.sub(r"\1***@", value) if isinstance(value, str) else value


class Settings(BaseModel):
    """The effective runtime settings. Build them with :meth:`from_env`; ``Settings()`` gives
    the defaults, keywords override (tests)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- stores
    bucket: str = Field("driftloop", min_length=1, description="the data bucket (S3 layout)")
    aws_conn_id: str = Field(
        "aws_default", min_length=1, description="Airflow connection the tasks use for S3"
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow server (falls back to MLFLOW_TRACKING_URI)"
    )
    database_url: str = Field(
        "sqlite:///driftloop.db",
        min_length=1,
        description="SQLAlchemy URL of the drift history and the audit ledger",
    )
    pushgateway_url: str | None = Field(
        None, description="Prometheus Pushgateway; unset: no metrics pushed"
    )
    registered_model: str = Field(
        "driftloop-detector", min_length=1, description="MLflow registered model"
    )
    alerts_conn_id: str = Field(
        "driftloop_alerts",
        min_length=1,
        description="Airflow connection of the Slack-compatible alerts webhook; absent: no alerts",
    )
    drift_experiment: str = Field(
        "drift-monitor", min_length=1, description="MLflow experiment of the drift checks"
    )
    # -- policies
    policy_path: str = Field(
        str(DEFAULT_POLICY_PATH), min_length=1, description="drift policy YAML"
    )
    promotion_policy_path: str = Field(
        str(DEFAULT_PROMOTION_POLICY_PATH), min_length=1, description="promotion policy YAML"
    )
    # -- schedules and sensors (read when a DAG file is parsed)
    drift_cron: str = Field("30 2 * * *", description="drift_monitor's daily check (UTC cron)")
    retrain_cron: str = Field("0 4 1 * *", description="retrain_detector's schedule (UTC cron)")
    rollout_cron: str = Field(
        "0 * * * *", description="rollout_guard's look at a rollout in progress (UTC cron)"
    )
    labels_cron: str = Field(
        "0 * * * *",
        description="labels_landed's look for labeled days that landed (UTC cron)",
    )
    labeling_cron: str = Field(
        "30 5 * * *",
        description="labeling_queue's daily pick of yesterday's frames to label (UTC cron)",
    )
    sensor_poke_s: int = Field(
        300, gt=0, description="seconds between looks for the day's _SUCCESS marker"
    )
    sensor_timeout_s: int = Field(
        6 * 3600, gt=0, description="seconds the sensor waits before the run ends skipped"
    )
    retry_delay_s: int = Field(120, ge=0, description="drift_monitor's retry delay in seconds")
    # -- training
    training_backend: TrainingBackend = Field(
        "local", description="local: the training virtualenv; kubernetes: a GPU pod"
    )
    training_image: str = Field(
        "ghcr.io/driftloop/training:latest",
        min_length=1,
        description="the training image (kubernetes backend)",
    )
    training_namespace: str = Field(
        "driftloop", min_length=1, description="namespace of the training pods"
    )
    training_s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint as the training pods reach it (unset: AWS S3)"
    )
    s3_region: str | None = Field(
        None, description="S3 region (the training pods' AWS_DEFAULT_REGION)"
    )
    golden_manifest_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the golden set's manifest as published (set: any other refused)",
    )
    training_mlflow_tracking_uri: str | None = Field(
        None,
        description="MLflow as the training pods reach it (unset: DRIFTLOOP_MLFLOW_TRACKING_URI)",
    )
    training_python: str = Field(
        str(DEFAULT_TRAINING_PYTHON),
        min_length=1,
        description="interpreter of the local training backend",
    )
    git_sha: str | None = Field(
        None, description="the code version the image was built from (recorded with runs)"
    )
    # -- audit ledger (driftloop.audit.wiring documents what happens when these are unset)
    ledger_hmac_key: SecretStr | None = Field(
        None,
        description="key of the ledger rows' HMAC (secret, >= 32 chars; DB role must not see it)",
    )
    ledger_anchor_bucket: str | None = Field(
        None, description="bucket of the ledger's write-once anchors (audit/anchors/); unset: none"
    )

    @field_validator("training_backend", mode="before")
    @classmethod
    def _normalise_backend(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("drift_cron", "retrain_cron", "rollout_cron", "labels_cron", "labeling_cron")
    @classmethod
    def _cron_shape(cls, value: str) -> str:
        # A preset (@daily …) or 5 fields; Airflow parses the expression itself later, this only
        # catches a value that is plainly not a cron line at parse time, with the variable named.
        value = value.strip()
        if value.startswith("@") or len(value.split()) == 5:
            return value
        raise ValueError("expected a cron expression of 5 fields or an @preset")

    @field_validator("ledger_hmac_key")
    @classmethod
    def _strong_ledger_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_ledger_key(value.get_secret_value())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(env_var(name))
            if raw not in (None, ""):
                values[name] = raw
        if "mlflow_tracking_uri" not in values and env.get("MLFLOW_TRACKING_URI"):
            values["mlflow_tracking_uri"] = env["MLFLOW_TRACKING_URI"]
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise SettingsError(_describe(err, values)) from None

    def redacted(self) -> dict[str, Any]:
        """The values, passwords in URLs masked: what ``driftloop settings`` prints."""
        return {name: redact(value) for name, value in self.model_dump().items()}

    def describe(self, environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Per field: its variable, the value (redacted), the default, whether the environment
        set it, and what it is for."""
        env = os.environ if environ is None else environ
        rows = []
        for name, field in type(self).model_fields.items():
            rows.append(
                {
                    "name": name,
                    "variable": env_var(name),
                    "value": redact(getattr(self, name)),
                    "default": redact(field.default),
                    "from_environment": env.get(env_var(name)) not in (None, ""),
                    "description": field.description or "",
                }
            )
        return rows


#: values a deployment template ships with: a key that is one of these is no secret
PLACEHOLDER_SECRETS = ("change-me", "changeme", "change_me", "secret", "password", "example")
LEDGER_KEY_MIN_LENGTH = 32


def check_ledger_key(key: str) -> None:
    """Refuse a ledger HMAC key that is short, a template placeholder or one repeated
    character (the message never contains the key)."""
    if len(key) < LEDGER_KEY_MIN_LENGTH:
        raise ValueError(f"the ledger key must have at least {LEDGER_KEY_MIN_LENGTH} characters")
    lowered = key.lower()
    if any(word in lowered for word in PLACEHOLDER_SECRETS) or len(set(key)) < 8:
        raise ValueError("the ledger key is a placeholder: generate one (openssl rand -hex 32)")


_SECRET_FIELDS = frozenset(
    name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)
)


def _describe(err: ValidationError, values: Mapping[str, Any]) -> str:
    problems = []
    for item in err.errors(include_url=False):
        name = str(item["loc"][0]) if item["loc"] else "?"
        shown = redact(values.get(name, item.get("input")))
        if name in _SECRET_FIELDS:  # a rejected secret is still a secret: never echo it
            shown = "***"
        problems.append(f"{env_var(name)}={shown!r}: {item['msg']}")
    return "bad driftloop setting: " + "; ".join(problems)
