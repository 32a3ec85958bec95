"""The output schema: long format, one row per (record, task), identical for every task and model.

Columns a task kind does not fill are null. The schema only ever grows by appending nullable
columns; `SCHEMA_VERSION` is bumped when it does.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 4  # 2: ligand_id added; partner_id and ligand filled. 3: model added. 4: conformal answers and domain


METADATA_KEY = b"p2t"


LABEL_PROB = pa.struct([("label", pa.string()), ("prob", pa.float32())])


SCHEMA = pa.schema([
    pa.field("seq_id", pa.string(), nullable=False),
    pa.field("header", pa.string(), nullable=False),
    pa.field("input_index", pa.int64(), nullable=False),
    pa.field("seq_hash", pa.string(), nullable=False),
    pa.field("length", pa.int32(), nullable=False),
    pa.field("residues_used", pa.int32(), nullable=False),
    pa.field("truncated", pa.bool_(), nullable=False),
    pa.field("task", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("value", pa.float64()),
    pa.field("label", pa.string()),
    pa.field("labels", pa.list_(pa.string())),
    pa.field("sites", pa.list_(pa.int32())),
    pa.field("residue_labels", pa.list_(pa.string())),
    pa.field("confidence", pa.float32()),
    pa.field("label_probs", pa.list_(LABEL_PROB)),
    pa.field("site_probs", pa.list_(pa.float32())),
    pa.field("residue_probs", pa.list_(pa.float32())),
    pa.field("partner_id", pa.string()),
    pa.field("ligand", pa.string()),
    pa.field("ligand_id", pa.string()),
    pa.field("model", pa.string()),
    pa.field("value_lo", pa.float64()),
    pa.field("value_hi", pa.float64()),
    pa.field("label_set", pa.list_(pa.string())),
    pa.field("site_set", pa.list_(pa.int32())),
    pa.field("residue_sets", pa.list_(pa.string())),
    pa.field("set_size", pa.float32()),
    pa.field("domain_score", pa.float32()),
    pa.field("in_domain", pa.bool_()),
])


COLUMN_DOCS = {
    "seq_id": "first word of the FASTA header ('' when the header has none)",
    "header": "full FASTA header without '>'",
    "input_index": "0-based position of the record in the input (restores input order)",
    "seq_hash": "sha256 of the normalised full sequence; identical sequences share it",
    "length": "residues in the normalised sequence",
    "residues_used": "residues given to the model (after truncation; 0 when not run)",
    "truncated": "sequence was cut to the encoder limit",
    "task": "task name",
    "status": "ok | invalid | empty | too_long | oom | error",
    "error": "why the row is not ok",
    "value": "regression prediction, in the task's units",
    "label": "class prediction",
    "labels": "multi-label prediction, in the task's canonical order",
    "sites": "predicted 1-based positions, ascending",
    "residue_labels": "one label per residue used",
    "confidence": "class: p(label); per-residue: mean p; others: probability of the whole output",
    "label_probs": "class: probability of every class; multi-label: p of each chosen label",
    "site_probs": "p of each predicted site",
    "residue_probs": "p of each residue's label",
    "partner_id": "id of the partner protein (--partner) of a pair task; null for one-protein tasks",
    "ligand": "SMILES of the ligand (--ligand/--ligands) of a protein-ligand task; null otherwise",
    "ligand_id": "name of that ligand (the .smi file's second column, else 'ligand1'...)",
    "model": "name of the model that answered the task (the run metadata has each model's path and sha256)",
    "value_lo": "regression: low end of the conformal interval holding the true value with the run's "
                "coverage (run metadata `coverage`); null where the model has no calibration for the task",
    "value_hi": "regression: high end of that interval",
    "label_set": "class: the conformal set of classes holding the true class with the run's coverage; "
                 "multi-label ('flags'): the labels called with the share of true labels missed kept "
                 "below 1 - coverage on average (conformal risk control); null without calibration",
    "site_set": "sites: the predicted sites kept with the share of false ones kept below 1 - coverage on "
                "average (conformal risk control); null without calibration",
    "residue_sets": "per-residue: each residue's conformal set of labels as codes (e.g. 'HC'), holding the "
                    "true label of the run's coverage of residues; null without calibration",
    "set_size": "entries in label_set / site_set; per-residue: mean labels per residue's set; "
                "regression: value_hi - value_lo",
    "domain_score": "mean cosine similarity of the protein's pooled representation to its nearest "
                    "training proteins (the model's domain index); null where the model has none",
    "in_domain": "domain_score at or above the threshold that 95% of held-out in-distribution proteins "
                 "pass; false: the protein is unlike the training data, trust its answers less",
}


def schema_with_metadata(run: dict[str, Any]) -> pa.Schema:
    """SCHEMA carrying the run's metadata as JSON under the `p2t` key."""
    doc = {"schema_version": SCHEMA_VERSION, **run}
    return SCHEMA.with_metadata({METADATA_KEY: json.dumps(doc, sort_keys=True).encode()})


def read_run_metadata(schema: pa.Schema) -> dict[str, Any]:
    """The run metadata stored in an output file's schema."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError("not a p2t output: no 'p2t' schema metadata")
    return json.loads(raw)


def rows_to_batch(rows: list[dict[str, Any]], schema: pa.Schema = SCHEMA) -> pa.RecordBatch:
    """Typed record batch from row dicts (missing keys are null)."""
    return pa.RecordBatch.from_pylist(rows, schema=schema)
