"""Benchmarks (`p2t bench`): screen throughput beside its floor and a naive path, host cost, resident
memory over a long library, exports over a large result set. Measurement only, never product.
"""
