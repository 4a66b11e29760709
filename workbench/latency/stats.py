"""Durations and their statistics, kept raw (optimum-benchmark's ``Latency``): results are
numbers; formatting happens at the edge."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Latency:
    """Raw durations in ms and their statistics (percentiles by linear interpolation)."""

    values: list[float] = field(default_factory=list)

    def add(self, ms: float) -> None:
        self.values.append(float(ms))

    @property
    def count(self) -> int:
        return len(self.values)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.values, q)) if self.values else math.nan

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def total(self) -> float:
        return float(sum(self.values))

    def stats(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "stdev": self.stdev, "p50": self.p50,
                "p90": self.p90, "p95": self.p95, "p99": self.p99,
                "min": min(self.values, default=math.nan), "max": max(self.values, default=math.nan)}
