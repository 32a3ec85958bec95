"""Interoperability: published Prot2Token checkpoints, and the Ray Data engine."""
