"""Checks of a DAG run's trigger conf that no retry can fix (pure: no Airflow, no network).

The first task of each DAG calls these and turns a :class:`RunConfError` into
``AirflowFailException``, so a bad trigger fails in seconds, naming the Params to change,
instead of failing later, retried, while it holds the DAG's only active-run slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class RunConfError(ValueError):
    """The trigger's conf or Params cannot work; the message names the Params to change."""


def check_conf_keys(conf: Mapping[str, Any] | None, declared: Iterable[str], dag_id: str) -> None:
    """Refuse conf keys the DAG does not declare as Params: a typo (``hysteresis-k``,
    ``end_day``) would otherwise be ignored silently and the run would do something else."""
    known = set(declared)
    unknown = sorted(set(conf or {}) - known)
    if unknown:
        raise RunConfError(
            f"{dag_id}: unknown conf key(s) {', '.join(map(repr, unknown))}; "
            f"the Params of this DAG are: {', '.join(sorted(known))}"
        )


def _effective(params: Mapping[str, Any], name: str, default: Any) -> tuple[Any, str]:
    """The value a run will use and where it comes from, for error messages."""
    value = params.get(name)
    if value is None:
        return default, f"the policy's {default}"
    return value, f"{name}={value}"


def check_drift_params(params: Mapping[str, Any], policy_defaults: Mapping[str, Any]) -> None:
    """Cross-field checks of drift_monitor's Params against the policy they override.

    ``policy_defaults``: ``k`` and ``n`` of the hysteresis, ``psi_warn`` and ``psi_critical``
    of the numeric and categorical defaults (the values a Param left empty keeps).
    """
    errors = []
    k, k_from = _effective(params, "hysteresis_k", policy_defaults["k"])
    n, n_from = _effective(params, "hysteresis_n", policy_defaults["n"])
    hysteresis_overridden = (
        params.get("hysteresis_k") is not None or params.get("hysteresis_n") is not None
    )
    if hysteresis_overridden and not 1 <= int(k) <= int(n):
        errors.append(
            f"hysteresis_k must be between 1 and hysteresis_n: k ({k_from}) > n ({n_from})"
        )
    warn, warn_from = _effective(params, "psi_warn", policy_defaults["psi_warn"])
    critical, critical_from = _effective(params, "psi_critical", policy_defaults["psi_critical"])
    psi_overridden = params.get("psi_warn") is not None or params.get("psi_critical") is not None
    if psi_overridden and float(warn) > float(critical):
        errors.append(
            f"psi_warn must not exceed psi_critical: warn ({warn_from}) > critical ({critical_from})"
        )
    if errors:
        raise RunConfError("invalid Params: " + "; ".join(errors))
