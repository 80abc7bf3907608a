"""Run settings shared by the experiments, and the cell budget rule."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidInputError

BUDGET_FACTOR = 1.25   # hard budget = lipopt time limit * BUDGET_FACTOR + BUDGET_SLACK
BUDGET_SLACK = 10.0    # seconds: building the network's polynomial / LP is not under lipopt's limit


@dataclass(frozen=True)
class Settings:
    """``quick``: tiny sizes, 2 seeds, few images, small budgets. ``seeds``: network seeds (default per
    experiment). ``time_limit``: lipopt's time limit per cell, overriding the experiment's defaults.
    ``slow``: also the expensive cells (large networks, big LPs). ``jobs``: cells run at once."""
    quick: bool = False
    seeds: tuple | None = None
    time_limit: float | None = None
    slow: bool = False
    jobs: int = 1

    def __post_init__(self):
        if self.seeds is not None:
            seeds = tuple(self.seeds)
            if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
                raise InvalidInputError(f"seeds must be non-negative integers, got {self.seeds!r}")
            object.__setattr__(self, "seeds", tuple(dict.fromkeys(seeds)))
        if self.time_limit is not None:
            t = self.time_limit
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
                raise InvalidInputError(f"time_limit must be a positive number of seconds, got {t!r}")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise InvalidInputError(f"jobs must be a positive integer, got {self.jobs!r}")

    def pick_seeds(self, default) -> tuple:
        return self.seeds if self.seeds is not None else tuple(default)

    def limits(self, default: float) -> tuple[float, float]:
        """(lipopt time limit, hard budget) of a cell whose experiment default limit is ``default``."""
        limit = float(self.time_limit) if self.time_limit is not None else float(default)
        return limit, hard_budget(limit)

    def as_dict(self) -> dict:
        return {"quick": self.quick, "seeds": list(self.seeds) if self.seeds is not None else None,
                "time_limit": self.time_limit, "slow": self.slow, "jobs": self.jobs}


def hard_budget(limit: float) -> float:
    return limit * BUDGET_FACTOR + BUDGET_SLACK
