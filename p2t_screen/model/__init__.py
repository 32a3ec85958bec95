"""The model: ESM2 encoder, Prot2Token decoder, molecule encoder, their configs and storage."""
