"""The outcome of the checks: one :class:`CheckResult` each, gathered in :class:`UICheckResult`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CheckResult:
    """One check: ``ok`` is True (passed), False (failed) or None (not asked for)."""

    name: str
    ok: bool | None
    detail: str
    urls: list[str] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class UICheckResult:
    airflow_url: str
    out_dir: Path
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and not self.failed

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.ok is False]

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed": self.failed,
            "airflow_url": self.airflow_url,
            "out_dir": str(self.out_dir),
            "checks": [asdict(c) for c in self.checks],
        }

    def write(self) -> Path:
        path = self.out_dir / "result.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path
