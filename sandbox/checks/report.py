"""Check results: what failed, in plain words, with a counterexample a proposer can act on."""

from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox.vocabulary import Assurance, Proof


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    counterexample: dict[str, Any] | None = None
    # The certificate's verdict on this condition, where the kind of piece has one
    # (sandbox/checks/certificate.py ConditionProof.to_dict()); None: not attempted.
    proof: dict[str, Any] | None = None


@dataclass
class CheckReport:
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def assurance(self) -> Assurance | None:
        return assurance_of({"valid": self.valid, "checks": [asdict(c) for c in self.checks]})

    def add(self, result: CheckResult) -> CheckResult:
        self.checks.append(result)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "assurance": self.assurance,
            "checks": [asdict(c) for c in self.checks],
        }


def assurance_of(report: Any) -> Assurance | None:
    """A stored report's label: CERTIFIED when every condition with a certificate is proved
    (and there is one), SAMPLED for any other valid report, None for an invalid or unreadable
    one (archives written before certificates have no proofs: SAMPLED)."""
    if not isinstance(report, dict) or report.get("valid") is not True:
        return None
    checks = report.get("checks")
    checks = [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []
    proofs = [c.get("proof") for c in checks if isinstance(c.get("proof"), dict)]
    if proofs and all(p.get("verdict") == Proof.PROVED for p in proofs):
        return Assurance.CERTIFIED
    return Assurance.SAMPLED
