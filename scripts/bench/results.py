"""One measured figure: its median over runs, the runs themselves, its baseline and its target."""

from __future__ import annotations

import dataclasses
import operator
from typing import Sequence

from common import median


@dataclasses.dataclass
class Figure:
    key: str  # stable name in results.json, e.g. "logs.flood.0_subscribers.child_s"
    what: str  # one line for the table
    unit: str
    runs: list[float | None]
    baseline_what: str = ""
    baseline_runs: list[float | None] = dataclasses.field(default_factory=list)
    # target: ("ratio" | "difference" | "value", "<=" | ">=", limit); ratio: value / baseline,
    # difference: value - baseline
    target: tuple[str, str, float] | None = None
    target_text: str = ""
    note: str = ""
    # what the figure was measured at, for plot.py (e.g. {"subscribers": 100, "seconds": 20})
    params: dict = dataclasses.field(default_factory=dict)

    @property
    def value(self) -> float | None:
        return median(self.runs)

    @property
    def baseline(self) -> float | None:
        return median(self.baseline_runs)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def difference(self) -> float | None:
        if self.value is None or self.baseline is None:
            return None
        return self.value - self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        on, op, limit = self.target
        measured = {"ratio": self.ratio, "difference": self.difference}.get(on, self.value)
        if measured is None:
            return False
        return {"<=": operator.le, ">=": operator.ge}[op](measured, limit)

    def to_json(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "value": self.value, "baseline": self.baseline, "ratio": self.ratio, "difference": self.difference, "met": self.met,
        }


def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "–"
    if abs(x) >= 1000:
        text = f"{x:,.0f}"
    elif abs(x) >= 100:
        text = f"{x:.0f}"
    elif abs(x) >= 10:
        text = f"{x:.1f}"
    else:
        text = f"{x:.3g}"
    return f"{text} {unit}".strip()


def markdown(figures: Sequence[Figure]) -> str:
    rows = ["| figure | jinad (median) | baseline (median) | ratio | target | met | runs |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        baseline = f"{fmt(f.baseline, f.unit)} ({f.baseline_what})" if f.baseline_runs else "–"
        ratio = f"{f.ratio:.2f}×" if f.ratio is not None else "–"
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        runs = ", ".join(fmt(r) for r in f.runs)
        what = f.what + (f" — {f.note}" if f.note else "")
        rows.append(f"| {what} | {fmt(f.value, f.unit)} | {baseline} | {ratio} | {f.target_text} | {met} | {runs} |")
    return "\n".join(rows)
