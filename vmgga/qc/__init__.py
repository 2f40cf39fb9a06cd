"""QC report pages: ``write_qc_page(result, output_dir)`` (one registration) and ``write_index``
(a batch), self-contained HTML with embedded PNG figures."""

from __future__ import annotations

__all__ = ["write_qc_page", "write_index"]


def __getattr__(name: str):
    """Import lazily (the page code pulls in matplotlib colour maps and Pillow)."""
    if name == "write_qc_page":
        from vmgga.qc.report import write_qc_page

        return write_qc_page
    if name == "write_index":
        from vmgga.qc.index import write_index

        return write_index
    raise AttributeError(name)
