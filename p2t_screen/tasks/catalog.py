"""The task catalog: standard task specs, with Prot2Token's published constants.

A model carries its own specs (in its config); this catalog is what `p2t tasks` lists and what
training configs and checkpoint imports start from.
"""

from __future__ import annotations

from ..io.records import AMINO_ACIDS
from .spec import TaskSpec

DEEPLOC_LOCATIONS = (
    "Cytoplasm", "Nucleus", "Extracellular", "Cell membrane", "Mitochondrion", "Plastid",
    "Endoplasmic reticulum", "Lysosome/Vacuole", "Golgi apparatus", "Peroxisome",
)

THREE_DI = AMINO_ACIDS  # Foldseek's 20 3Di states are written with the amino-acid letters


SELF_SUPERVISED_RESIDUES = "STYKRN"


def _position_task(residue: str) -> TaskSpec:
    return TaskSpec(
        name=f"positions_{residue.lower()}",
        kind="sites",
        token=f"<task_{residue.lower()}>",
        description=f"self-supervised: every position of residue {residue} (labels from the sequence)",
    )


CATALOG: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("stability", "regression", value_range=(-1.97, 3.4),
             description="protein stability score (Prot2Token format)"),
    TaskSpec("fluorescence", "regression", value_range=(1.283, 4.123),
             description="GFP-variant log fluorescence"),
    TaskSpec("melting_temperature", "regression", value_range=(2.0, 106.0),
             token="<task_protein_melting_temperature>", description="melting temperature (C)"),
    TaskSpec("localization_deeploc", "multilabel", labels=DEEPLOC_LOCATIONS,
             description="DeepLoc subcellular locations (multi-label)"),
    TaskSpec("secondary_structure", "per_residue", labels=("alpha_helix", "beta_sheet", "coil_or_loop"),
             codes="HEC", description="3-state secondary structure, one label per residue"),
    TaskSpec("secondary_structure_8", "per_residue",
             labels=("alpha_helix", "helix_3_10", "pi_helix", "strand", "bridge", "turn", "bend", "coil"),
             codes="HGIEBTSC", description="DSSP 8-state secondary structure, one label per residue"),
    TaskSpec("structure_3di", "per_residue", labels=tuple(f"3di_{c}" for c in THREE_DI),
             codes=THREE_DI, description="Foldseek 3Di structural alphabet, one state per residue "
                                         "(p2t export --format foldseek feeds a structure search)"),
    TaskSpec("phosphorylation_sites", "sites", residues="STY",
             description="phosphorylated S/T/Y positions"),
    TaskSpec("ligand_affinity", "regression", value_range=(0.40, 15.22), inputs="ligand",
             token="<task_protein_ligand_affinity>",
             description="protein-ligand binding affinity (pKd-like; Prot2Token's range and format)"),
    TaskSpec("kinase_phosphorylation_site", "sites", residues="ST", inputs="pair", prompt="candidates",
             description="S/T positions of the substrate phosphorylated by the partner kinase "
                         "(pair: substrate, kinase)"),
    *(_position_task(r) for r in SELF_SUPERVISED_RESIDUES),
)}
