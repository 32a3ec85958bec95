"""Charts drawn with matplotlib as SVG, for the report to inline as data URIs.

matplotlib is used through its object API (`Figure`, no pyplot), so drawing touches no global
state and needs no display; each figure is a standalone SVG image, so figures never share ids.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from ..tasks.readout import Chart

COLOURS = ("#3b6ea8", "#e08a2e", "#5a9e5a", "#b5485d")
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "p2t", "font.size": 9, "axes.spines.top": False,
         "axes.spines.right": False, "axes.titlesize": 10, "axes.titleweight": "bold"}


def chart_svg(chart: Chart) -> str:
    """The chart as SVG text."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        many = len(chart.categories) > 8 if chart.form == "bars" else False
        fig = Figure(figsize=(6.0, 3.4 if many else 2.8), layout="constrained")
        ax = fig.add_subplot()
        (_bars if chart.form == "bars" else _histogram)(ax, chart)
        ax.set_title(chart.title, loc="left")
        ax.set_xlabel(f"{chart.xlabel} ({chart.note})" if chart.note and chart.xlabel else chart.note or chart.xlabel)
        ax.set_ylabel(chart.ylabel)
        if len(chart.series) > 1:
            ax.legend(frameon=False, fontsize=8)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _bars(ax, chart: Chart) -> None:
    n, k = len(chart.categories), max(len(chart.series), 1)
    x = np.arange(n)
    width = 0.8 / k
    for i, (name, values) in enumerate(chart.series.items()):
        ax.bar(x + (i - (k - 1) / 2) * width, values, width, label=name, color=COLOURS[i % len(COLOURS)])
    numeric = all(str(c).isdigit() for c in chart.categories)
    if numeric and n > 20:  # counts 0..n-1: a tick every few bars reads better than n crowded ones
        step = -(-n // 12)
        ax.set_xticks(x[::step], [str(c) for c in chart.categories][::step])
        return
    ax.set_xticks(x, [_short(str(c)) for c in chart.categories], rotation=35 if n > 8 else 0,
                  ha="right" if n > 8 else "center", fontsize=8 if n > 8 else 9)


def _short(label: str, most: int = 22) -> str:
    return label if len(label) <= most else label[: most - 1] + "\u2026"


def _histogram(ax, chart: Chart) -> None:
    edges = np.asarray(chart.categories, dtype=float)
    for i, (name, values) in enumerate(chart.series.items()):
        ax.stairs(values, edges, fill=True, alpha=0.85, label=name, color=COLOURS[i % len(COLOURS)])


def data_uri(svg: str) -> str:
    """An SVG as a data URI for an <img>, so the page needs no other file."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
