"""Execution: frame scheduling, thread pools, offline and Dask runs (no Swift)."""
