"""Reading and writing: records and read policies, FASTA, ligands, the output schema, Parquet parts."""
