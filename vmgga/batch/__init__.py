"""Batch and longitudinal registration jobs: manifests, resumable runs, local and Dask execution.

``run_batch(manifest, BatchOptions(output_dir=...))`` is what ``vmgga batch`` calls.
"""

from __future__ import annotations

__all__ = ["BatchOptions", "BatchSummary", "run_batch"]


def __getattr__(name: str):
    """Import lazily: ``vmgga.batch.manifest`` stays light for callers that only read manifests."""
    if name in __all__:
        from vmgga.batch import runner

        return getattr(runner, name)
    raise AttributeError(name)
