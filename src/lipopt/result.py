"""The Result every method returns, for the API and the CLI alike."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Result:
    """``upper_bound`` is certified (valid in exact arithmetic) or None; ``lower_bound`` is a value
    attained by the true Lipschitz constant's supremum (a gradient norm) or None."""
    upper_bound: float | None
    lower_bound: float | None
    method: str
    norm: str
    degree: int | None = None
    raw_value: float | None = None   # the solver's optimum before certification
    status: str = "ok"
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        """upper_bound / lower_bound (>= 1), or None when either is missing."""
        if self.upper_bound is None or not self.lower_bound:
            return None
        return self.upper_bound / self.lower_bound

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gap"] = self.gap
        return d
