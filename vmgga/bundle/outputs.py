"""Where a pair's files go, and committing them so that a failed pair leaves nothing behind."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from vmgga.bundle.pairs import RegistrationPair
from vmgga.export.outputs import OUTPUT_FILES, QC_FILE
from vmgga.io.atomic import PARTIAL_TAG, check_not_an_input


def pair_output_dir(output_dir: str | os.PathLike, pair: RegistrationPair) -> Path:
    """Where a pair's files go: ``output_dir`` for one pair, ``output_dir/<case_id>`` for a datalist."""
    return Path(output_dir) / pair.output_subdir if pair.output_subdir else Path(output_dir)


def check_no_input_overwritten(pair: RegistrationPair, out_dir: Path) -> None:
    """Raise :class:`~vmgga.errors.OutputError` if an output file would replace one of the pair's inputs."""
    outputs = [Path(out_dir) / name for name in (*OUTPUT_FILES.values(), QC_FILE)]
    check_not_an_input(outputs, pair.input_paths().values())


def commit_outputs(result: Any, out_dir: Path, qc: bool = False) -> dict[str, Path]:
    """Write ``result`` with :func:`vmgga.write_outputs` so that a failure leaves ``out_dir`` as it was.

    An existing ``out_dir`` gets the files through :func:`vmgga.write_outputs`' own transaction
    (previous complete set or new complete set). A new ``out_dir`` is first written as a hidden
    staging folder next to it (named like :mod:`vmgga.io.atomic`'s partial files, so
    :func:`~vmgga.io.atomic.remove_stale_partials` clears one left by a killed run) and then renamed
    into place: the folder appears complete or not at all.
    """
    from vmgga import write_outputs

    out_dir = Path(out_dir)
    if out_dir.is_dir():
        return write_outputs(result, out_dir, qc=qc)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}{PARTIAL_TAG}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        staging.mkdir()
        written = write_outputs(result, staging, qc=qc)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: out_dir / Path(path).relative_to(staging) for name, path in written.items()}
