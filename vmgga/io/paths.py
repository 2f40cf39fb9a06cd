"""Output paths that stay inside the output folder and never overwrite an input."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePath

from vmgga.errors import OutputError


def safe_output_path(output_dir: str | os.PathLike, name: str | os.PathLike) -> Path:
    """``output_dir / name``, refusing names that would write outside ``output_dir``.

    Refused: empty names, absolute paths, ``..`` components, and paths whose existing parts are
    symlinks leading outside the folder. Subfolders (``qc/page.png``) are allowed.

    Raises:
        OutputError: naming the folder and the offending name.
    """
    pure = PurePath(name)
    if str(name) in ("", ".") or pure.is_absolute() or pure.drive or ".." in pure.parts:
        raise OutputError(f"output name {str(name)!r} would write outside the output folder '{output_dir}'")
    folder = Path(output_dir).resolve()
    target = Path(output_dir) / pure
    resolved = target.resolve()
    if resolved != folder and folder not in resolved.parents:
        raise OutputError(
            f"output name {str(name)!r} resolves to '{resolved}' (through a symlink), "
            f"outside the output folder '{output_dir}'"
        )
    return target


def check_not_an_input(
    output_paths: Iterable[str | os.PathLike], input_paths: Iterable[str | os.PathLike]
) -> None:
    """Refuse outputs that are an input file or lie inside an input folder (e.g. a DICOM folder).

    Symlinks and hard links are followed: an output that is another name of an input is refused.

    Raises:
        OutputError: naming the output and the input.
    """
    inputs = [Path(p) for p in input_paths if p is not None]
    for output in (Path(p) for p in output_paths):
        for source in inputs:
            if _same_or_inside(output, source):
                raise OutputError(
                    f"output '{output}' would overwrite the input '{source}'; choose another output"
                )


def _same_or_inside(output: Path, source: Path) -> bool:
    """Whether writing ``output`` would change the file ``source`` or the folder ``source``."""
    out_resolved, source_resolved = output.resolve(), source.resolve()
    if out_resolved == source_resolved or source_resolved in out_resolved.parents:
        return True
    try:
        return output.exists() and source.exists() and os.path.samefile(output, source)
    except OSError:
        return False
