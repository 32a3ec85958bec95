"""Screening: batching, grammar-constrained decoding, the screener, pair and ligand expansion,
the FASTA-to-Parquet pipeline and its run record.
"""
