"""The promotion gate: a pure, fail-closed decision under the promotion policy.

``decide_promotion`` takes the candidate's and the champion's evaluation summaries (scored on
the same images, in the same environment), the paired-bootstrap CI of the primary metric's
delta, the paired latency comparison (:class:`LatencyComparison`) and the policy, and returns
a :class:`GateDecision` listing every check with its value and threshold. Rules:

* no champion: the absolute floors alone decide (``min_map50``, ``min_map50_95``,
  ``max_p95_latency_ms``);
* with a champion, every one of: ``delta.low >= -map_tolerance``; the latency check below;
  ``map50 − map50_int8 <= int8_max_map_loss``; no camera regresses (``camera_slices`` and a
  ``camera <id>`` check per camera judged: :mod:`driftloop.promotion.gate_slices`); the floors.

The latency check (``p95_latency``) never compares two noisy p95s: it rejects only when the
whole confidence interval of ``p95(candidate) / p95(champion)``, from paired interleaved
timings, lies above ``1 + latency_tolerance`` (its value is the interval's lower bound). What
else is known is used too: when both serving graphs have the same signature (same ops,
shapes and FLOPs, :mod:`driftloop.evaluation.graph_signature`) the two models do the same
arithmetic and a latency difference can only be noise, so the bar is
``1 + max(latency_tolerance, latency.same_graph_tolerance)``; a different graph — the case the
timing must catch, e.g. a larger image size — is held to ``1 + latency_tolerance``. The
check's detail says which case applied and why. A comparison with fewer rounds than
``latency.rounds`` or at a higher confidence than ``latency.confidence`` (both widen the
interval, which rejects less) fails.

In both cases an ``evaluation_set`` check asks for a non-empty evaluation set and, with a
champion, the same number of images for candidate, champion and delta (the same set).

Fail closed: a missing, NaN or infinite number fails the check that needs it, with a reason;
the gate never promotes on incomplete evidence. A delta CI of another metric than the
policy's ``primary_metric``, or at a lower confidence than ``bootstrap.confidence``, fails
too. Comparisons are inclusive and allow 1e-9 for floating-point representation (relative to
the threshold, at least 1e-9 absolute), so that ``0.80 − 0.79`` is a loss of exactly 1 pp
rather than 0.010000000000000009.

The policy itself (:class:`PromotionPolicy`, its YAML and overrides) is a pydantic model in
:mod:`driftloop.config.promotion_policy`, re-exported here. Otherwise only the standard
library, :class:`DeltaCI` and :class:`LatencyComparison` are imported.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from driftloop.config.policies import PolicyError
from driftloop.config.promotion_policy import (
    APPROVAL_MODES,
    ARCHIVE_MODES,
    DEFAULT_PROMOTION_POLICY_PATH,
    PROMOTE_TARGETS,
    PromotionPolicy,
    load_promotion_policy,
    parse_promotion_policy,
)
from driftloop.evaluation.bootstrap import DeltaCI
from driftloop.evaluation.latency import LatencyComparison

# the policy lives in driftloop.config.promotion_policy; its names stay importable from here
__all__ = [
    "APPROVAL_MODES",
    "ARCHIVE_MODES",
    "DEFAULT_PROMOTION_POLICY_PATH",
    "EPS",
    "PROMOTE_TARGETS",
    "Check",
    "EvalSummary",
    "GateDecision",
    "LatencyComparison",
    "PolicyError",
    "PromotionPolicy",
    "decide_promotion",
    "load_promotion_policy",
    "parse_promotion_policy",
]

EPS = 1e-9


# --------------------------------------------------------------------------------------------
# evidence and decision


def _num(value: Any) -> float | None:
    """A finite float, or None for anything missing, NaN, infinite or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _json_num(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class EvalSummary:
    """One model on the evaluation set. mAPs are FP32 unless named int8; latencies are of the
    serving artifact (INT8 ONNX)."""

    map50: float | None
    map50_95: float | None
    map50_int8: float | None
    p95_latency_ms: float | None
    p50_latency_ms: float | None
    n_images: int | None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _json_num(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EvalSummary:
        return cls(**{f.name: raw.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    op: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": _json_num(self.value),
            "threshold": _json_num(self.threshold),
            "op": self.op,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    target_alias: str | None
    checks: list[Check]
    reasons: list[str]
    policy_version: str = ""
    primary_metric: str = ""
    has_champion: bool = False
    requires_approval: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "promote" if self.promote else "reject"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "promote": self.promote,
            "target_alias": self.target_alias,
            "requires_approval": self.requires_approval,
            "policy_version": self.policy_version,
            "primary_metric": self.primary_metric,
            "has_champion": self.has_champion,
            "checks": [c.to_dict() for c in self.checks],
            "reasons": list(self.reasons),
            "evidence": copy.deepcopy(self.evidence),
        }

    def table(self) -> str:
        """The checks as a fixed-width text table, with the verdict underneath."""

        def fmt(x: float | None) -> str:
            if x is None or (isinstance(x, float) and not math.isfinite(x)):
                return "n/a"
            if isinstance(x, int):
                return str(x)
            return f"{x:.4f}"

        header = ("check", "result", "value", "rule", "threshold", "detail")
        rows = [
            (c.name, "PASS" if c.passed else "FAIL", fmt(c.value), c.op, fmt(c.threshold), c.detail)
            for c in self.checks
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]

        def line(cells: tuple[str, ...]) -> str:
            head = "  ".join(
                cell.rjust(w) if i in (2, 4) else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(cells[:-1], widths, strict=True))
            )
            return f"{head}  {cells[-1]}".rstrip()

        out = [line(header), line((*tuple("-" * w for w in widths), "-" * 6))]
        out += [line(r) for r in rows]
        if self.promote:
            tail = f"PROMOTE -> {self.target_alias}"
            if self.requires_approval:
                tail += " (after approval)"
        else:
            tail = f"REJECT ({len(self.reasons)} failed)"
        out.append(f"decision: {tail}; policy {self.policy_version}")
        return "\n".join(out)


def _slack(threshold: float) -> float:
    return EPS * max(1.0, abs(threshold))


def _at_least(value: float, threshold: float) -> bool:
    return value >= threshold - _slack(threshold)


def _at_most(value: float, threshold: float) -> bool:
    return value <= threshold + _slack(threshold)


def _floor_checks(c: EvalSummary, policy: PromotionPolicy) -> list[Check]:
    out = []
    for name, attr, floor in (
        ("floor_map50", "map50", policy.min_map50),
        ("floor_map50_95", "map50_95", policy.min_map50_95),
    ):
        v = _num(getattr(c, attr))
        if v is None:
            out.append(Check(name, False, None, floor, f"candidate {attr} missing or NaN", ">="))
        else:
            ok = _at_least(v, floor)
            out.append(
                Check(name, ok, v, floor, f"candidate {attr} {v:.4f} vs floor {floor}", ">=")
            )
    limit = policy.max_p95_latency_ms
    v = _num(c.p95_latency_ms)
    if v is None:
        missing = "candidate p95 latency missing or NaN"
        out.append(Check("floor_p95_latency_ms", False, None, limit, missing, "<="))
    else:
        out.append(
            Check(
                "floor_p95_latency_ms",
                _at_most(v, limit),
                v,
                limit,
                f"candidate p95 {v:.2f} ms vs limit {limit} ms",
                "<=",
            )
        )
    return out


def _count(value: Any) -> int | None:
    x = _num(value)
    return int(x) if x is not None and x == int(x) else None


def _evaluation_set_check(
    candidate: EvalSummary, champion: EvalSummary | None, delta: DeltaCI | None
) -> Check:
    n = _count(candidate.n_images)
    if n is None or n < 1:
        return Check(
            "evaluation_set", False, n, 1, "candidate evaluated on no images (n_images)", ">="
        )
    if champion is None:
        return Check("evaluation_set", True, n, 1, f"{n} images", ">=")
    others = {"champion": _count(champion.n_images)}
    if delta is not None:
        others["delta"] = _count(delta.n_images)
    bad = {k: v for k, v in others.items() if v != n}
    if bad:
        said = ", ".join(f"{k} {'n/a' if v is None else v}" for k, v in bad.items())
        return Check(
            "evaluation_set",
            False,
            n,
            n,
            f"not the same evaluation set: candidate {n} images, {said}",
            "==",
        )
    return Check("evaluation_set", True, n, n, f"{n} images, same for all", "==")


def _delta_check(delta: DeltaCI | None, policy: PromotionPolicy) -> Check:
    threshold = -policy.map_tolerance
    metric = policy.primary_metric
    if delta is None:
        return Check("map_delta", False, None, threshold, f"no paired {metric} delta CI", ">=")
    if delta.metric and delta.metric != metric:
        return Check(
            "map_delta",
            False,
            _num(delta.low),
            threshold,
            f"delta is of {delta.metric}, the policy decides on {metric}",
            ">=",
        )
    if _num(delta.confidence) is None or delta.confidence < policy.bootstrap_confidence - EPS:
        return Check(
            "map_delta",
            False,
            _num(delta.low),
            threshold,
            f"CI confidence {delta.confidence} below the policy's {policy.bootstrap_confidence}",
            ">=",
        )
    low = _num(delta.low)
    if low is None:
        return Check(
            "map_delta", False, None, threshold, f"{metric} delta lower bound missing or NaN", ">="
        )
    point, high = _num(delta.point), _num(delta.high)
    ci = f"[{low:+.4f}, {'n/a' if high is None else f'{high:+.4f}'}]"
    pt = "n/a" if point is None else f"{point:+.4f}"
    detail = (
        f"{metric} delta {pt}, {delta.confidence:.0%} CI {ci} "
        f"({delta.n_resamples} resamples); low vs -tolerance {threshold:+.4f}"
    )
    return Check("map_delta", _at_least(low, threshold), low, threshold, detail, ">=")


def _gflops(graph: Mapping[str, Any] | None) -> str:
    flops = _num((graph or {}).get("flops"))
    return "n/a" if flops is None else f"{flops / 1e9:.2f}"


def _graph_reason(latency: LatencyComparison) -> str:
    """Why the latency bar is what it is: same graph, a different one, or unknown."""
    same = latency.same_graph
    cand, champ = latency.candidate_graph or {}, latency.champion_graph or {}
    if same:
        return (
            f"same graph as the champion (signature {str(cand.get('fingerprint'))[:12]}, "
            f"{_gflops(cand)} GFLOPs): identical arithmetic, so a difference can only be noise"
        )
    if same is None:
        return "graph signatures unknown: the timing alone decides"
    ratio = latency.flops_ratio
    share = "" if ratio is None else f", {ratio:.2f}x the champion's FLOPs"
    return (
        f"different graph ({_gflops(cand)} vs {_gflops(champ)} GFLOPs{share}): the timing decides"
    )


def _latency_check(latency: LatencyComparison | None, policy: PromotionPolicy) -> Check:
    name, tolerance = "p95_latency", policy.latency_tolerance
    bar = 1.0 + tolerance
    if latency is None:
        return Check(
            name, False, None, bar, "no paired latency comparison of candidate and champion", "<="
        )
    confidence = _num(latency.confidence)
    if confidence is None or confidence > policy.latency_confidence + EPS:
        return Check(
            name,
            False,
            _num(latency.low),
            bar,
            f"latency interval at {latency.confidence} confidence, wider than the policy's "
            f"{policy.latency_confidence}",
            "<=",
        )
    rounds = _count(latency.rounds)
    if rounds is None or rounds < policy.latency_rounds:
        return Check(
            name,
            False,
            _num(latency.low),
            bar,
            f"latency timed in {latency.rounds} paired rounds, the policy asks for "
            f"{policy.latency_rounds}",
            "<=",
        )
    low = _num(latency.low)
    if low is None or _num(latency.high) is None or _num(latency.ratio) is None:
        return Check(name, False, None, bar, "p95 ratio or its interval missing or NaN", "<=")
    if latency.same_graph:
        bar = 1.0 + max(tolerance, policy.latency_same_graph_tolerance)
    passed = _at_most(low, bar)
    verdict = "not wholly above" if passed else "wholly above"
    detail = f"{latency.summary()}; interval {verdict} {bar:.2f}; {_graph_reason(latency)}"
    return Check(name, passed, low, bar, detail, "<=")


def _int8_check(candidate: EvalSummary, policy: PromotionPolicy) -> Check:
    fp32, int8 = _num(candidate.map50), _num(candidate.map50_int8)
    limit = policy.int8_max_map_loss
    if fp32 is None or int8 is None:
        missing = "map50" if fp32 is None else "map50_int8"
        return Check("int8_loss", False, None, limit, f"candidate {missing} missing or NaN", "<=")
    loss = fp32 - int8
    detail = f"mAP@0.5 FP32 {fp32:.4f} - INT8 {int8:.4f}"
    return Check("int8_loss", _at_most(loss, limit), loss, limit, detail, "<=")


def promotion_target(promote_to: str, *, has_champion: bool) -> str:
    """No champion, nothing to shadow or canary against: the first model becomes champion."""
    return promote_to if has_champion else "champion"


def decide_promotion(
    candidate: EvalSummary,
    champion: EvalSummary | None,
    delta: DeltaCI | None,
    policy: PromotionPolicy,
    latency: LatencyComparison | Mapping[str, Any] | None = None,
    slices: Mapping[str, Any] | None = None,
) -> GateDecision:
    """Promote or reject the candidate; every check, passed or not, is listed. ``latency``:
    the paired comparison with the champion (a :class:`LatencyComparison` or its
    ``to_dict()`` from the ledger); ``slices``: the per-camera evidence
    (:func:`driftloop.promotion.gate_slices.camera_slices`). Without either, a candidate with
    a champion is rejected."""
    from driftloop.promotion.gate_slices import slice_checks  # it imports this module

    if isinstance(latency, Mapping):
        latency = LatencyComparison.from_dict(latency)
    checks = [_evaluation_set_check(candidate, champion, delta)]
    if champion is not None:
        checks += [
            _delta_check(delta, policy),
            _latency_check(latency, policy),
            _int8_check(candidate, policy),
            *slice_checks(slices, policy, candidate.n_images),
        ]
    checks += _floor_checks(candidate, policy)
    reasons = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    promote = not reasons
    target = promotion_target(policy.promote_to, has_champion=champion is not None)
    return GateDecision(
        promote=promote,
        target_alias=target if promote else None,
        checks=checks,
        reasons=reasons,
        policy_version=policy.version,
        primary_metric=policy.primary_metric,
        has_champion=champion is not None,
        requires_approval=promote and policy.approval == "required",
        evidence={
            "candidate": candidate.to_dict(),
            "champion": None if champion is None else champion.to_dict(),
            "delta": None if delta is None else delta.to_dict(),
            "latency": None if latency is None else latency.to_dict(),
            "slices": None if slices is None else dict(slices),
            "policy": policy.to_dict(),
        },
    )
