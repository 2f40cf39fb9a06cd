"""Issue 16, fault injection at the file level: headers that claim huge sizes, a full disk.

Each test checks the promise: nothing is allocated or written beyond what the file holds, one
clear error, and either nothing written or a complete set that loads.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vmgga.errors import GeometryError, InputError
from vmgga.io import read_image

REPO = Path(__file__).resolve().parents[2]
PEAK_GROWTH_LIMIT_MB = 150  # reading a tiny file may grow the peak RSS by this much, no more


# --- crafted headers -----------------------------------------------------------------------------


def nifti_bomb(path: Path, shape_ijk: tuple[int, int, int], dtype=np.float64) -> Path:
    """A gzipped NIfTI header claiming ``shape_ijk`` voxels of ``dtype``, with no voxel data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape_ijk)
    header.set_data_dtype(dtype)
    header.set_sform(np.eye(4), code=1)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4, 9))
    return path


def metaimage_bomb(path: Path, shape_ijk: tuple[int, int, int]) -> Path:
    """A ``.mhd`` claiming ``shape_ijk`` doubles, beside a 100-byte ``.raw``."""
    dims = " ".join(str(s) for s in shape_ijk)
    path.write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"ElementSpacing = 1 1 1\nDimSize = {dims}\nElementType = MET_DOUBLE\n"
        f"ElementDataFile = {path.stem}.raw\n"
    )
    path.with_suffix(".raw").write_bytes(b"\0" * 100)
    return path


def nrrd_bomb(path: Path, shape_ijk: tuple[int, int, int], encoding: str = "raw") -> Path:
    """An inline NRRD header claiming ``shape_ijk`` doubles, followed by 100 bytes."""
    dims = " ".join(str(s) for s in shape_ijk)
    header = (
        f"NRRD0004\ntype: double\ndimension: 3\nsizes: {dims}\nencoding: {encoding}\nendian: little\n"
        "space directions: (1,0,0) (0,1,0) (0,0,1)\nspace: left-posterior-superior\n\n"
    )
    data = b"\0" * 100
    path.write_bytes(header.encode() + (gzip.compress(data) if encoding == "gzip" else data))
    return path


BOMBS = {
    "nifti_over_limit": lambda d: nifti_bomb(d / "bomb.nii.gz", (1000, 1000, 1000)),
    "nifti_under_limit": lambda d: nifti_bomb(d / "bomb.nii.gz", (1000, 1000, 500)),
    "nifti_raw": lambda d: _uncompressed(nifti_bomb(d / "bomb.nii.gz", (1000, 1000, 500))),
    "mhd": lambda d: metaimage_bomb(d / "bomb.mhd", (1000, 1000, 500)),
    "nrrd_raw": lambda d: nrrd_bomb(d / "bomb.nrrd", (1000, 1000, 500)),
    "nrrd_gzip": lambda d: nrrd_bomb(d / "bomb.nrrd", (1000, 1000, 500), "gzip"),
}


def _uncompressed(gz_path: Path) -> Path:
    target = gz_path.with_name("bomb.nii")
    target.write_bytes(gzip.decompress(gz_path.read_bytes()))
    gz_path.unlink()
    return target


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_huge_header_is_refused_before_any_allocation(tmp_path, kind):
    """A few hundred bytes claiming 4 to 8 GB: refused with one error, peak memory barely grows."""
    path = BOMBS[kind](tmp_path)
    assert path.stat().st_size < 1000
    script = textwrap.dedent(
        f"""
        import json, resource
        from vmgga.errors import VmggaError
        from vmgga.io import read_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            read_image({str(path)!r}, role="moving")
            message = None
        except VmggaError as error:
            message = str(error)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"message": message, "growth_mb": (after - before) / 1024}}))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["message"] is not None and "bomb" in outcome["message"]
    assert re.search(r"declares (\S+ GB|\d+ bytes) of voxel data", outcome["message"]), outcome
    assert outcome["growth_mb"] < PEAK_GROWTH_LIMIT_MB, outcome
    assert run.stderr == "", run.stderr


def test_over_limit_header_names_the_stored_size(tmp_path):
    """1000^3 float64 is 7.5 GB as stored, although its float32 copy (3.7 GB) is under the limit."""
    path = nifti_bomb(tmp_path / "bomb.nii.gz", (1000, 1000, 1000))
    with pytest.raises(GeometryError, match=r"declares 7\.5 GB of voxel data"):
        read_image(path)


def test_short_header_claim_is_truncation(tmp_path):
    path = nifti_bomb(tmp_path / "bomb.nii.gz", (1000, 1000, 500))
    with pytest.raises(InputError, match=r"truncated or corrupt file: its header declares 4000000000 bytes"):
        read_image(path)
