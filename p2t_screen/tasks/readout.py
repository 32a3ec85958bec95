"""What a person reads from a task's rows: wide-table columns, residue tracks, and summaries
with the charts a report draws. The kinds fill these in; `results/` writes and draws them.

A `TaskSummary` is fed the ok rows of one task as Arrow tables, batch by batch, so summarising
100,000 proteins costs memory for the counts, not for the rows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class WideColumn:
    """One column a task adds to the one-row-per-protein table: `<task><suffix>`."""

    suffix: str  # "" for the answer itself
    type: pa.DataType
    doc: str


@dataclass(frozen=True)
class ResidueTrack:
    """A task's answer laid along the residues used: one code character per residue, the label
    each code stands for, and each residue's probability (None where the task gives none)."""

    codes: str
    labels: list[str]
    probs: list[float | None]


@dataclass(frozen=True)
class Chart:
    """A figure a report draws: bars over named categories, or a histogram over numeric bins.

    `series` maps a series name to one number per category (bars) or per bin (histogram, where
    `categories` holds the bin edges, one more than each series' values)."""

    title: str
    form: str  # "bars" | "histogram"
    categories: list[str] | list[float]
    series: dict[str, list[float]]
    xlabel: str = ""
    ylabel: str = "proteins"
    note: str = ""


class Histogram:
    """Counts over fixed bins between `low` and `high`; values outside fall in the end bins."""

    def __init__(self, low: float, high: float, bins: int = 20) -> None:
        if not high > low:
            high = low + 1.0
        self.edges = np.linspace(low, high, bins + 1)
        self.counts = np.zeros(bins, dtype=np.int64)
        self.n, self.total, self.squares = 0, 0.0, 0.0
        self.low, self.high = math.inf, -math.inf

    def add(self, values: pa.Array | pa.ChunkedArray | Sequence[float]) -> None:
        x = np.asarray(pc.drop_null(pa.array(values) if not isinstance(values, (pa.Array, pa.ChunkedArray))
                                    else values).to_numpy(zero_copy_only=False), dtype=np.float64)
        x = x[np.isfinite(x)]
        if not x.size:
            return
        idx = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(self.counts) - 1)
        self.counts += np.bincount(idx, minlength=len(self.counts))
        self.n += x.size
        self.total += float(x.sum())
        self.squares += float((x * x).sum())
        self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def sd(self) -> float:
        return math.sqrt(max(self.squares / self.n - self.mean ** 2, 0.0)) if self.n else math.nan

    def chart(self, title: str, xlabel: str, ylabel: str = "proteins") -> Chart:
        return Chart(title, "histogram", [float(e) for e in self.edges], {"count": self.counts.tolist()},
                     xlabel, ylabel)


def value_counts(values: pa.Array | pa.ChunkedArray) -> Counter:
    """Counter of the non-null values of an Arrow array."""
    return Counter({item["values"]: item["counts"] for item in pc.value_counts(pc.drop_null(values)).to_pylist()})


def share(counts: Counter, top: int = 3, names: dict[str, str] | None = None) -> str:
    """'a 60%, b 30%, c 10%': the most common entries with their share of the total."""
    total = sum(counts.values())
    if not total:
        return "-"
    names = names or {}
    return ", ".join(f"{names.get(k, k)} {v / total:.0%}" for k, v in counts.most_common(top))


@dataclass
class MeanProbs:
    """Each label's mean probability over the entries of a list<struct<label, prob>> column
    (`label_probs`) that give it one."""

    sums: Counter = field(default_factory=Counter)
    entries: Counter = field(default_factory=Counter)

    def add(self, label_probs: pa.ChunkedArray | pa.Array) -> None:
        flat = pc.list_flatten(label_probs)
        if not len(flat):
            return
        table = pa.table({"label": pc.struct_field(flat, "label"), "prob": pc.struct_field(flat, "prob")})
        grouped = table.group_by("label").aggregate([("prob", "sum"), ("prob", "count")])
        labels = grouped.column("label").to_pylist()
        self.sums.update(dict(zip(labels, grouped.column("prob_sum").to_pylist())))
        self.entries.update(dict(zip(labels, grouped.column("prob_count").to_pylist())))

    def mean(self, label: str) -> float:
        return self.sums[label] / max(self.entries[label], 1)


def label_chart(title: str, labels: Sequence[str], counts: Counter, rows: int, probs: MeanProbs) -> Chart:
    """Bars per label: the share of proteins given it, beside the mean probability of it."""
    n = max(rows, 1)
    return Chart(title, "bars", list(labels), {"share of proteins": [counts[lab] / n for lab in labels],
                                               "mean probability": [probs.mean(lab) for lab in labels]},
                 ylabel="share / probability")


@dataclass
class TaskSummary:
    """What one task found: a one-line headline (terminal) and charts (report). Subclasses count
    their kind's answer in `add_answers`; the confidence distribution is common to all."""

    task: str
    rows: int = 0
    confidence: Histogram = field(default_factory=lambda: Histogram(0.0, 1.0))
    # Trust: conformal set sizes (interval widths for regression) and the domain flags.
    set_sizes: list[float] = field(default_factory=list)
    in_domain: int = 0
    out_of_domain: int = 0

    def add(self, rows: pa.Table, sequences: Sequence[str | None] | None = None) -> None:
        """Count a table of this task's ok rows (`sequences`: each row's residues used, when known)."""
        if not rows.num_rows:
            return
        self.rows += rows.num_rows
        self.confidence.add(rows.column("confidence"))
        if "set_size" in rows.column_names:  # older results (schema < 4) have no trust columns
            self.set_sizes += pc.drop_null(rows.column("set_size")).to_pylist()
            flags = value_counts(rows.column("in_domain"))
            self.in_domain, self.out_of_domain = self.in_domain + flags[True], self.out_of_domain + flags[False]
        self.add_answers(rows, sequences)

    def trust_line(self) -> str:
        """'mean set size 1.4; 3 of 80 out of domain': what the trust columns say ("" when empty)."""
        parts = []
        if self.set_sizes:
            parts.append(f"mean set size {np.mean(self.set_sizes):.3g}")
        if self.in_domain + self.out_of_domain:
            parts.append(f"{self.out_of_domain} of {self.in_domain + self.out_of_domain} out of domain")
        return "; ".join(parts)

    def add_answers(self, rows: pa.Table, sequences: Sequence[str | None] | None) -> None:
        raise NotImplementedError

    def headline(self) -> str:
        raise NotImplementedError

    def answer_charts(self) -> list[Chart]:
        raise NotImplementedError

    def charts(self) -> list[Chart]:
        """The kind's charts, the distribution of the rows' confidence, then of their conformal
        set sizes (interval widths) where the rows have them."""
        if not self.rows:
            return []
        charts = [*self.answer_charts(), self.confidence.chart(f"{self.task}: confidence", "confidence")]
        if self.set_sizes:
            sizes = Histogram(min(self.set_sizes), max(self.set_sizes))
            sizes.add(self.set_sizes)
            chart = sizes.chart(f"{self.task}: conformal set size / interval width", "set size (width)")
            charts.append(Chart(chart.title, chart.form, chart.categories, chart.series, chart.xlabel, chart.ylabel,
                                note=f"out of domain: {self.out_of_domain} of "
                                     f"{self.in_domain + self.out_of_domain} proteins"
                                if self.in_domain + self.out_of_domain else ""))
        return charts
