"""The audit's result types: one `Finding` per problem (or fact) found, and the `AuditResult` that holds them.

Every check in `shipsft.data.audit_*` returns `(findings, stats)`: findings say what is wrong and how to fix it,
stats are the numbers behind the plots of `audit.html` (histograms, percentiles, clusters), JSON-ready.

    from shipsft.audit.findings import Finding
    Finding("masks.zero_trained", "error", "3 examples train on nothing", fix="...", examples=["train.jsonl:4"])
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from shipsft.errors import AuditFailed

Severity = Literal["error", "warning", "info"]
SEVERITIES = ("error", "warning", "info")
MAX_EXAMPLES = 20  # sources listed per finding; the full count is in data["count"]


@dataclass
class Finding:
    check: str  # dotted name, e.g. "template.parity", "duplicates.near"
    severity: Severity
    message: str
    fix: str = ""
    examples: list[str] = field(default_factory=list)  # sources ("file:line") or eval ids
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if len(self.examples) > MAX_EXAMPLES:
            self.data.setdefault("count", len(self.examples))
            self.examples = list(self.examples[:MAX_EXAMPLES])


@dataclass
class AuditResult:
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # config hash, data fingerprint, model, timings

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def infos(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "info"]

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: SEVERITIES.index(f.severity))

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": {"errors": len(self.errors), "warnings": len(self.warnings), "info": len(self.infos)},
            "findings": [asdict(f) for f in self.sorted_findings()],
            "stats": self.stats,
            "meta": self.meta,
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)

    def as_error(self, override_hint: str = "shipsft train CONFIG --skip-audit") -> AuditFailed:
        """The `AuditFailed` that `shipsft train` raises: every error with its fix, then how to override."""
        lines = [f"the pre-flight audit found {len(self.errors)} error(s); training refuses to start:"]
        for f in self.errors:
            where = f" (e.g. {', '.join(f.examples[:3])})" if f.examples else ""
            lines.append(f"  {f.check}: {f.message}{where}")
            if f.fix:
                lines.append(f"      fix: {f.fix}")
        lines.append(f"Fix the data/config and re-run, or override with `{override_hint}` "
                     "(the override is recorded in the run).")
        return AuditFailed(lines)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)
