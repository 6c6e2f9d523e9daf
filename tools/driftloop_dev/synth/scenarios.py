"""Scenarios of the synthetic world and their ground truth.

Pure Python, no heavy imports: a DAG file may read :data:`SCENARIOS` (e.g. for the choices
of a ``Param``) at parse time.

Every scenario is a function from "days since drift started" to the parameters of that
day's data-generating distribution (:class:`DayParams`). The ground truth
(:class:`GroundTruth`) is derived from the same definitions, so the data and the answer key
cannot disagree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any

# ---------------------------------------------------------------------------------------------
# Baseline distribution (the reference world every scenario starts from)
# ---------------------------------------------------------------------------------------------

BASELINE_CAMERAS: tuple[str, ...] = ("cam-01", "cam-02", "cam-03", "cam-04")
BASELINE_CAMERA_PROBS: tuple[float, ...] = (0.30, 0.25, 0.25, 0.20)
NEW_CAMERA = "cam-05"
ALL_CAMERAS: tuple[str, ...] = (*BASELINE_CAMERAS, NEW_CAMERA)
MODEL_VERSION = "1"

BRIGHTNESS_MEAN = 120.0
BRIGHTNESS_SD = 25.0
CONTRAST_MEAN = 45.0
CONTRAST_SD = 10.0
P_NO_DETECTION = 0.05  # share of frames where nothing is detected (top_class "none")
P_BALL_TOP = 0.30  # among frames with detections: share whose top class is "ball"
CONFIDENCE_MEAN = 0.78

#: the size of the lighting drop of ``abrupt`` and ``gradual`` (brightness units, 0..255)
BRIGHTNESS_DROP = 35.0
#: ``gradual`` reaches the full drop after this many days
GRADUAL_RAMP_DAYS = 14
#: ``abrupt``: contrast is multiplied by this from the drift day on
ABRUPT_CONTRAST_SCALE = 0.80
#: ``abrupt``: share of rows coming from the new camera
NEW_CAMERA_SHARE = 0.30
#: ``class-mix``: ball share among frames with detections after the drift
CLASS_MIX_P_BALL_TOP = 0.60
#: ``confidence-decay``: mean confidence reached at the end of the decay, and its length
DECAYED_CONFIDENCE_MEAN = 0.55
CONFIDENCE_DECAY_DAYS = 10
#: ``confidence-decay``: the share of players drawn upside down at the end of the decay (it
#: grows with the decay from 0). It is what makes a real model's accuracy fall in rendered
#: frames (labeled and traffic alike) while every image statistic stays: the same pixels,
#: mirrored inside the same box (:mod:`.frames`). A model trained on upright players still
#: finds them, with worse boxes (mAP@0.5:0.95 falls, mAP@0.5 hardly) and a confidence that
#: hardly moves: only labels show it. Fading the objects toward the pitch instead moves
#: contrast, saturation and sharpness (objects are most of a frame's contrast) long before a
#: model's mAP falls, so input drift would alarm first.
MAX_UPSIDE_DOWN = 1.0
#: ``brightness-shift``: the largest shift (in brightness sd). Beyond it the brightness of
#: the bright cameras clips at 255, and the shift would no longer be the size asked for.
MAX_BRIGHTNESS_SHIFT_SD = 3.0

#: ``corrupt``: (days before end_date, defect). Offsets 1, 4, 8 fall into a 14-day current
#: window ending at end_date, 15, 19, 24 into the 14-day reference window before it; each
#: window keeps 11 valid days, and the last day itself is always valid.
CORRUPT_LAYOUT: tuple[tuple[int, str], ...] = (
    (1, "missing_column"),
    (4, "wrong_dtype"),
    (8, "nulls"),
    (15, "out_of_range"),
    (19, "truncated"),
    (24, "empty"),
)
DEFECTS: tuple[str, ...] = tuple(defect for _, defect in CORRUPT_LAYOUT)
CORRUPT_MIN_DAYS = 28

IMAGE_COLUMNS: tuple[str, ...] = ("brightness", "mean_r", "mean_g", "mean_b")


@dataclass(frozen=True)
class DayParams:
    """Parameters of one day's data-generating distribution."""

    brightness_delta: float = 0.0
    contrast_scale: float = 1.0
    cameras: tuple[str, ...] = BASELINE_CAMERAS
    camera_probs: tuple[float, ...] = BASELINE_CAMERA_PROBS
    p_ball_top: float = P_BALL_TOP
    confidence_mean: float = CONFIDENCE_MEAN
    #: how far into the drift this day is: 0 = not drifted, 1 = fully drifted
    severity: float = 0.0
    #: the partition's defect (``corrupt`` only), one of :data:`DEFECTS`
    defect: str | None = None
    #: share of the players rendered upside down (``confidence-decay`` only): 0 draws
    #: every player upright
    upside_down: float = 0.0


BASELINE = DayParams()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    drifted_columns: tuple[str, ...] = ()
    has_drift: bool = True
    #: whether the drift's size is a parameter of the world (``WorldSpec.magnitude``)
    takes_magnitude: bool = False

    def describe(self, magnitude: float | None = None) -> str:
        """The description, with the world's magnitude when the scenario takes one."""
        if self.takes_magnitude and magnitude is not None:
            return (
                f"from the drift day on: brightness (and RGB means with it) up by "
                f"{magnitude:g} sd (+{magnitude * BRIGHTNESS_SD:g} of 255); nothing else moves"
            )
        return self.description

    def params(self, days_since_drift: int | None, magnitude: float | None = None) -> DayParams:
        """Day parameters; ``days_since_drift`` is None before the drift (or without one).
        ``magnitude`` is the drift's size for scenarios that take one (sd units)."""
        if not self.has_drift or days_since_drift is None or days_since_drift < 0:
            return BASELINE
        k = days_since_drift
        if self.takes_magnitude and magnitude is None:
            raise ValueError(f"scenario {self.name!r} needs a magnitude")
        if self.name == "abrupt":
            share = NEW_CAMERA_SHARE
            return replace(
                BASELINE,
                brightness_delta=-BRIGHTNESS_DROP,
                contrast_scale=ABRUPT_CONTRAST_SCALE,
                cameras=ALL_CAMERAS,
                camera_probs=(*(p * (1 - share) for p in BASELINE_CAMERA_PROBS), share),
                severity=1.0,
            )
        if self.name == "gradual":
            severity = min(1.0, (k + 1) / GRADUAL_RAMP_DAYS)
            return replace(
                BASELINE, brightness_delta=-BRIGHTNESS_DROP * severity, severity=severity
            )
        if self.name == "class-mix":
            return replace(BASELINE, p_ball_top=CLASS_MIX_P_BALL_TOP, severity=1.0)
        if self.name == "confidence-decay":
            severity = min(1.0, (k + 1) / CONFIDENCE_DECAY_DAYS)
            mean = CONFIDENCE_MEAN + (DECAYED_CONFIDENCE_MEAN - CONFIDENCE_MEAN) * severity
            return replace(
                BASELINE,
                confidence_mean=mean,
                upside_down=MAX_UPSIDE_DOWN * severity,
                severity=severity,
            )
        if self.name == "brightness-shift":
            # the RGB means follow brightness (they are linear in it), as in ``gradual``
            return replace(BASELINE, brightness_delta=magnitude * BRIGHTNESS_SD, severity=1.0)
        raise AssertionError(f"scenario {self.name!r} has no drift definition")  # pragma: no cover


SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        s.name: s
        for s in (
            Scenario(
                "stable",
                "no drift anywhere: every day iid from the same distribution",
                has_drift=False,
            ),
            Scenario(
                "abrupt",
                "from the drift day on: lighting drop (brightness -35, RGB means with it, "
                "contrast x0.8) and a new camera cam-05 with ~30% of the rows",
                ("brightness", "mean_r", "mean_g", "mean_b", "contrast", "camera_id", "embedding"),
            ),
            Scenario(
                "gradual",
                f"brightness (and RGB means) fall linearly from the drift day, reaching "
                f"-{BRIGHTNESS_DROP:g} after {GRADUAL_RAMP_DAYS} days, then stay",
                ("brightness", "mean_r", "mean_g", "mean_b", "embedding"),
            ),
            Scenario(
                "class-mix",
                f"from the drift day the ball share of top_class (among frames with "
                f"detections) goes {P_BALL_TOP:g} -> {CLASS_MIX_P_BALL_TOP:g}; the "
                "n_detections mix and the content part of the embedding follow",
                ("top_class", "n_detections", "embedding"),
            ),
            Scenario(
                "confidence-decay",
                f"concept drift: inputs stable, mean confidence falls {CONFIDENCE_MEAN:g} -> "
                f"{DECAYED_CONFIDENCE_MEAN:g} over {CONFIDENCE_DECAY_DAYS} days from the drift "
                f"day; in rendered frames a growing share of the players (up to "
                f"{MAX_UPSIDE_DOWN:g}) is upside down: image statistics stay, a real model's "
                "accuracy decays",
                ("confidence_mean", "confidence_max"),
            ),
            Scenario(
                "brightness-shift",
                "from the drift day on: brightness (and RGB means with it) up by --magnitude "
                "standard deviations of brightness (required); nothing else moves",
                ("brightness", "mean_r", "mean_g", "mean_b", "embedding"),
                takes_magnitude=True,
            ),
            Scenario(
                "corrupt",
                "no drift, but six partitions are broken, one defect each: "
                + ", ".join(f"{d} (end-{o})" for o, d in CORRUPT_LAYOUT),
                has_drift=False,
            ),
        )
    }
)


# ---------------------------------------------------------------------------------------------
# Validated world parameters
# ---------------------------------------------------------------------------------------------


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _as_date(name: str, value: Any) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a date or 'YYYY-MM-DD', got {value!r}")


@dataclass(frozen=True)
class WorldSpec:
    """The validated arguments of a synthetic world (see :func:`world_spec`)."""

    scenario: str
    days: int
    drift_day: int | None  # None for scenarios without drift
    end_date: date
    rows_per_day: int = 1000
    labeled_per_day: int = 8
    files_per_day: int = 2
    seed: int = 0
    #: size of the drift in sd of its feature (``brightness-shift`` only, else None)
    magnitude: float | None = None
    #: labeled frames seen through their camera (its brightness offset and tint); off by
    #: default: the model-quality floors were calibrated on frames without (``.frames``)
    camera_looks: bool = False

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days - 1)

    @property
    def dates(self) -> list[date]:
        return [self.start_date + timedelta(days=i) for i in range(self.days)]

    def date_of(self, day_index: int) -> date:
        return self.start_date + timedelta(days=day_index)

    def day_params(self, day_index: int) -> DayParams:
        scenario = SCENARIOS[self.scenario]
        since = None if self.drift_day is None else day_index - self.drift_day
        params = scenario.params(since, self.magnitude)
        if self.scenario == "corrupt":
            defects = {self.days - 1 - offset: defect for offset, defect in CORRUPT_LAYOUT}
            if day_index in defects:
                params = replace(params, defect=defects[day_index])
        return params


def _as_magnitude(scenario: Scenario, value: Any) -> float | None:
    if not scenario.takes_magnitude:
        if value is not None:
            raise ValueError(
                f"magnitude is a parameter of scenario(s) "
                f"{sorted(s.name for s in SCENARIOS.values() if s.takes_magnitude)} only, "
                f"got magnitude={value!r} for scenario {scenario.name!r}"
            )
        return None
    if value is None:
        raise ValueError(
            f"magnitude (the shift in standard deviations, e.g. 0.2) is required for "
            f"scenario {scenario.name!r}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"magnitude must be a number (sd units), got {value!r}")
    if not 0 < value <= MAX_BRIGHTNESS_SHIFT_SD:
        raise ValueError(
            f"magnitude must be in (0, {MAX_BRIGHTNESS_SHIFT_SD:g}] sd (beyond that brightness "
            f"clips at 255), got {value!r}"
        )
    return float(value)


def default_drift_day(days: int) -> int:
    """Drift in the last 14 days when there is room for a reference before them."""
    return max(days - 14, days // 2)


def world_spec(
    scenario: str,
    *,
    days: int,
    drift_day: int | None = None,
    end_date: date | str,
    rows_per_day: int = 1000,
    labeled_per_day: int = 8,
    files_per_day: int = 2,
    seed: int = 0,
    magnitude: float | None = None,
    camera_looks: bool = False,
) -> WorldSpec:
    """Validate the arguments of a world; bad ones raise ValueError naming the parameter."""
    if not isinstance(camera_looks, bool):
        raise ValueError(f"camera_looks must be true or false, got {camera_looks!r}")
    if not isinstance(scenario, str) or scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {sorted(SCENARIOS)}, got {scenario!r}")
    days = _as_int("days", days)
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if scenario == "corrupt" and days < CORRUPT_MIN_DAYS:
        raise ValueError(
            f"days must be >= {CORRUPT_MIN_DAYS} for scenario 'corrupt' (broken partitions are "
            f"placed up to {max(o for o, _ in CORRUPT_LAYOUT)} days before end_date), got {days}"
        )
    if drift_day is not None:
        drift_day = _as_int("drift_day", drift_day)
        if not 0 <= drift_day < days:
            raise ValueError(f"drift_day must be in [0, days-1] = [0, {days - 1}], got {drift_day}")
    rows_per_day = _as_int("rows_per_day", rows_per_day)
    if rows_per_day < 1:
        raise ValueError(f"rows_per_day must be >= 1, got {rows_per_day}")
    labeled_per_day = _as_int("labeled_per_day", labeled_per_day)
    if labeled_per_day < 0 or labeled_per_day > 9999:
        raise ValueError(f"labeled_per_day must be in [0, 9999], got {labeled_per_day}")
    files_per_day = _as_int("files_per_day", files_per_day)
    if not 1 <= files_per_day <= min(rows_per_day, 99999):
        raise ValueError(
            f"files_per_day must be in [1, rows_per_day] = [1, {rows_per_day}], got {files_per_day}"
        )
    seed = _as_int("seed", seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    end = _as_date("end_date", end_date)
    magnitude = _as_magnitude(SCENARIOS[scenario], magnitude)
    if not SCENARIOS[scenario].has_drift:
        drift_day = None
    elif drift_day is None:
        drift_day = default_drift_day(days)
    return WorldSpec(
        scenario=scenario,
        days=days,
        drift_day=drift_day,
        end_date=end,
        rows_per_day=rows_per_day,
        labeled_per_day=labeled_per_day,
        files_per_day=files_per_day,
        seed=seed,
        magnitude=magnitude,
        camera_looks=camera_looks,
    )


# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    """What a synthetic world contains: the answer key for drift detection and validation.

    Dates are ISO strings so that :meth:`to_dict` is JSON-ready. ``severity`` maps every
    drifted day to how far into the drift it is (1.0 = full effect; ramps for ``gradual``
    and ``confidence-decay``).
    """

    scenario: str
    seed: int
    start_date: str
    end_date: str
    days: int
    drift_day: int | None
    drift_start_date: str | None
    drifted_columns: tuple[str, ...]
    drifted_days: tuple[str, ...]
    corrupt_partitions: Mapping[str, str] = field(default_factory=dict)
    severity: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    #: the drift's size in sd (scenarios that take one), else None
    magnitude: float | None = None

    @property
    def dates(self) -> list[str]:
        start = date.fromisoformat(self.start_date)
        return [(start + timedelta(days=i)).isoformat() for i in range(self.days)]

    def is_drifted(self, day: date | str) -> bool:
        return (day if isinstance(day, str) else day.isoformat()) in self.drifted_days

    def is_corrupt(self, day: date | str) -> bool:
        return (day if isinstance(day, str) else day.isoformat()) in self.corrupt_partitions

    @property
    def valid_days(self) -> list[str]:
        return [d for d in self.dates if d not in self.corrupt_partitions]

    def to_dict(self) -> dict[str, Any]:
        # "magnitude" only where the scenario has one: the other worlds' JSON is unchanged
        extra = {} if self.magnitude is None else {"magnitude": self.magnitude}
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "days": self.days,
            "drift_day": self.drift_day,
            "drift_start_date": self.drift_start_date,
            "drifted_columns": list(self.drifted_columns),
            "drifted_days": list(self.drifted_days),
            "corrupt_partitions": dict(self.corrupt_partitions),
            "severity": dict(self.severity),
            "description": self.description,
            **extra,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroundTruth:
        return cls(
            scenario=data["scenario"],
            seed=int(data["seed"]),
            start_date=data["start_date"],
            end_date=data["end_date"],
            days=int(data["days"]),
            drift_day=data.get("drift_day"),
            drift_start_date=data.get("drift_start_date"),
            drifted_columns=tuple(data.get("drifted_columns", ())),
            drifted_days=tuple(data.get("drifted_days", ())),
            corrupt_partitions=dict(data.get("corrupt_partitions", {})),
            severity={k: float(v) for k, v in data.get("severity", {}).items()},
            description=data.get("description", ""),
            magnitude=None if data.get("magnitude") is None else float(data["magnitude"]),
        )


def ground_truth_of(spec: WorldSpec) -> GroundTruth:
    scenario = SCENARIOS[spec.scenario]
    drifted: list[str] = []
    severity: dict[str, float] = {}
    corrupt: dict[str, str] = {}
    for i, day in enumerate(spec.dates):
        params = spec.day_params(i)
        if params.severity > 0:
            drifted.append(day.isoformat())
            severity[day.isoformat()] = round(params.severity, 6)
        if params.defect is not None:
            corrupt[day.isoformat()] = params.defect
    return GroundTruth(
        scenario=spec.scenario,
        seed=spec.seed,
        start_date=spec.start_date.isoformat(),
        end_date=spec.end_date.isoformat(),
        days=spec.days,
        drift_day=spec.drift_day,
        drift_start_date=None
        if spec.drift_day is None
        else spec.date_of(spec.drift_day).isoformat(),
        drifted_columns=scenario.drifted_columns if scenario.has_drift else (),
        drifted_days=tuple(drifted),
        corrupt_partitions=dict(sorted(corrupt.items())),
        severity=severity,
        description=scenario.describe(spec.magnitude),
        magnitude=spec.magnitude,
    )


def ground_truth(
    scenario: str,
    *,
    days: int,
    drift_day: int | None = None,
    end_date: date | str,
    seed: int = 0,
    magnitude: float | None = None,
) -> GroundTruth:
    """The ground truth of a world, without generating it."""
    return ground_truth_of(
        world_spec(
            scenario,
            days=days,
            drift_day=drift_day,
            end_date=end_date,
            seed=seed,
            magnitude=magnitude,
        )
    )
