"""Residue tracks for the report: a protein's sequence with each per-residue task's answer under
it, residues shaded by their label and by the probability of that label."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from html import escape
from typing import Any

from ..tasks.readout import ResidueTrack
from .dataset import Results
from .sequences import InputSequences

LINE = 60  # residues per line
PALETTE = ("#3b6ea8", "#e08a2e", "#5a9e5a", "#b5485d", "#8a6bb8", "#4aa3a3", "#c7a21f", "#7a7a7a")


def picked_records(results: Results, ids: Sequence[str], first: int) -> Iterator[list[dict[str, Any]]]:
    """The rows of the records whose id is in `ids` (all of them), or of the first `first` records."""
    wanted, seen = set(ids), 0
    for rows in results.records():
        if wanted:
            if rows[0]["seq_id"] in wanted:
                yield rows
        elif seen < first:
            seen += 1
            yield rows
        else:
            return


def _colours(labels: Sequence[str]) -> dict[str, str]:
    return {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}


def _span(code: str, colour: str | None, p: float | None) -> str:
    if colour is None:
        return escape(code)
    alpha = 0.25 + 0.75 * (1.0 if p is None else max(0.0, min(1.0, p)))
    return f'<span style="background:{colour}{int(alpha * 255):02x};color:#fff">{escape(code)}</span>'


def track_html(results: Results, rows: list[dict[str, Any]], sequences: InputSequences | None) -> str:
    """One protein's tracks: numbered lines of residues, each track's codes under them."""
    first = rows[0]
    tracks: list[tuple[str, ResidueTrack, dict[str, str]]] = []
    for row in rows:
        spec = results.specs[row["task"]]
        if row["status"] == "ok" and spec.task_kind.residue_tracks and not row.get("partner_id") \
                and not row.get("ligand_id"):
            track = spec.task_kind.residue_track(spec, row)
            tracks.append((row["task"], track, _colours(spec.labels or ("site",))))
    title = f"<h3>{escape(first['seq_id'])} <span class='muted'>{escape(first['header'])} · " \
            f"{first['length']} residues</span></h3>"
    if not tracks:
        return title + "<p class='muted'>no per-residue answers for this protein</p>"
    sequence = (sequences.sequence(first["input_index"], first["seq_hash"])[: first["residues_used"]]
                if sequences else None)
    used = max(len(t.codes) for _, t, _ in tracks)
    lines = []
    for start in range(0, used, LINE):
        stop = min(start + LINE, used)
        block = [f"<div class='row'><span class='lab'>{start + 1}</span></div>"]
        if sequence:
            block.append(f"<div class='row'><span class='lab'>sequence</span>{escape(sequence[start:stop])}</div>")
        for task, track, colours in tracks:
            spans = "".join(_span(track.codes[i], colours.get(track.labels[i]), track.probs[i])
                            for i in range(start, min(stop, len(track.codes))))
            block.append(f"<div class='row'><span class='lab'>{escape(task)}</span>{spans}</div>")
        lines.append("".join(block))
    legend = "".join(_legend(task, track, colours) for task, track, colours in tracks)
    note = "" if sequence else "<p class='muted'>sequence not shown: the screened FASTA is not at hand (--fasta)</p>"
    return f"{title}{note}<div class='track'>{''.join(lines)}</div><div class='legend muted'>{legend}</div>"


def _legend(task: str, track: ResidueTrack, colours: dict[str, str]) -> str:
    pairs = dict(zip(track.labels, track.codes))
    keys = "".join(f"<span style='background:{colours[lab]};color:#fff'>{escape(code)} = {escape(lab)}</span>"
                   for lab, code in pairs.items() if lab in colours)
    return f"<div>{escape(task)}: {keys} (darker: more probable)</div>"
