"""The forms an export takes: file format and table layout (light: the CLI's options read them)."""

from __future__ import annotations

from enum import Enum


class Format(str, Enum):
    CSV = "csv"
    TSV = "tsv"
    XLSX = "xlsx"
    PARQUET = "parquet"
    THREE_LINE = "3line"
    FOLDSEEK = "foldseek"  # a folder: predicted 3Di + amino acids for `foldseek tsv2db`


PER_RESIDUE = (Format.THREE_LINE, Format.FOLDSEEK)  # formats of per-residue answers only


class Layout(str, Enum):
    LONG = "long"
    WIDE = "wide"
    RESIDUES = "residues"
