"""Check results: what failed, in plain words, with a counterexample a proposer can act on."""

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    counterexample: dict[str, Any] | None = None


@dataclass
class CheckReport:
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def add(self, result: CheckResult) -> CheckResult:
        self.checks.append(result)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "checks": [asdict(c) for c in self.checks]}
