"""The champion a performance check measures: its version, its ONNX files, its own evaluation.

* the version holding the ``champion`` alias (:func:`driftloop.promotion.registry.version_with_alias`;
  no alias: nothing to measure);
* its ONNX models (:func:`driftloop.promotion.registry.onnx_model_uris`), downloaded and
  checked against the SHA-256 recorded on the version's tags before onnxruntime opens them
  (:func:`driftloop.retrain.model_files.download_onnx`): nothing unrecorded is scored;
* its *baseline*: the promotion gate's evaluation of this version as the candidate — the
  ``evaluation`` row of the audit ledger (``retrain/evaluate.py`` appends it, with the URI of
  ``reports/retrain/<run>/evaluation.json`` and the dataset's hash), FP32 mAP@0.5 and
  mAP@0.5:0.95 on the eval split of its training snapshot. A champion the gate never
  evaluated (registered by hand, or before driftloop) has none: its accuracy is not measured,
  and the check says so — the inputs are still checked. An evaluation without mAP is an error
  (:class:`NoBaselineError`);
* that snapshot (``dataset_sha256`` tag of the version, checked against the ledger's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftloop.config.settings import Settings

#: the precision a labeled day is measured in: the one of the baseline (the gate's mAP is
#: FP32), so measured and baseline differ by the data only, never by quantization
MEASURED_PRECISION = "fp32"
#: the precision that wrote the inference logs (serving runs the INT8 model)
SERVED_PRECISION = "int8"
DATASET_TAG = "dataset_sha256"


class PerformanceCheckError(ValueError):
    """Something a retry cannot fix: the champion lacks what its performance needs."""


class NoBaselineError(PerformanceCheckError):
    """The champion has no evaluation of its own in the ledger."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    uris: dict[str, str]  # {"int8": uri, "fp32": uri}
    hashes: dict[str, str] = field(default_factory=dict)  # {kind: sha256} from its tags
    dataset_sha256: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def current_champion(client, name: str) -> Champion | None:
    """The version holding ``champion`` (None when no version holds it)."""
    from driftloop.promotion import registry
    from driftloop.retrain.model_files import onnx_sha256_tags

    version = registry.version_with_alias(client, name, registry.CHAMPION)
    if version is None:
        return None
    tags = version.tags or {}
    dataset = tags.get(DATASET_TAG)
    try:
        uris = registry.onnx_model_uris(version)
    except LookupError:  # no ONNX model on record: champion_onnx says so if it is needed
        uris = {}
    return Champion(
        name=name,
        version=str(version.version),
        uris=uris,
        hashes=onnx_sha256_tags(version),
        dataset_sha256=dataset if dataset and dataset != "-" else None,
    )


def champion_onnx(champion: Champion, kind: str, dest: Path) -> Path:
    """The champion's ``kind`` ONNX file, downloaded under ``dest`` and hash-checked."""
    from driftloop.retrain.model_files import ONNX_SHA256_TAGS, download_onnx

    if kind not in champion.uris:
        raise PerformanceCheckError(
            f"{champion.label}: its registered version names no {kind} ONNX model"
        )
    if kind not in champion.hashes:
        raise PerformanceCheckError(
            f"{champion.label}: no recorded SHA-256 of its {kind} ONNX model (tag "
            f"{ONNX_SHA256_TAGS[kind]}): nothing unrecorded is scored"
        )
    return download_onnx(champion.uris[kind], dest / kind, champion.hashes[kind])


def baseline_of(settings: Settings, champion: Champion) -> dict[str, Any] | None:
    """``{"map50", "map50_95", "source", "dataset_sha256"}`` of the gate's newest evaluation
    of the champion as the candidate (the audit ledger); None when the ledger has none (the
    ledger's "not found"); :class:`NoBaselineError` for one without mAP."""
    from driftloop.retrain.records import ledger

    subject = f"model:{champion.name}/v{champion.version}"
    for row in reversed(ledger(settings).entries(subject=subject, kind="evaluation")):
        own = (row.payload or {}).get("candidate") or {}
        if str(own.get("version")) != champion.version:
            continue
        if own.get("map50") is None or own.get("map50_95") is None:
            raise NoBaselineError(
                f"{champion.label}: its evaluation (ledger row {row.id}) has no mAP "
                f"(map50={own.get('map50')}, map50_95={own.get('map50_95')})"
            )
        uri = (row.payload or {}).get("uri")
        return {
            "map50": float(own["map50"]),
            "map50_95": float(own["map50_95"]),
            "source": f"ledger evaluation row {row.id}" + (f" ({uri})" if uri else ""),
            "dataset_sha256": (row.input_hashes or {}).get("dataset"),
        }
    return None


def no_baseline_note(champion: Champion) -> str:
    subject = f"model:{champion.name}/v{champion.version}"
    return (
        f"{champion.label} has no evaluation of its own in the audit ledger (kind "
        f"'evaluation', subject {subject!r}): its accuracy is not measured; a champion "
        "promoted through retrain_detector's gate has one"
    )


def eval_dataset(champion: Champion, baseline: dict[str, Any]) -> str:
    """The SHA-256 of the snapshot whose eval split the champion was evaluated on."""
    tagged, evaluated = champion.dataset_sha256, baseline.get("dataset_sha256")
    if tagged and evaluated and tagged != evaluated:
        raise PerformanceCheckError(
            f"{champion.label}: tag {DATASET_TAG}={tagged} but its evaluation "
            f"({baseline['source']}) ran on dataset {evaluated}"
        )
    if not (tagged or evaluated):
        raise PerformanceCheckError(
            f"{champion.label}: no {DATASET_TAG} tag and no dataset in its evaluation: the "
            "eval split to calibrate the label-free estimate on is unknown"
        )
    return str(tagged or evaluated)
