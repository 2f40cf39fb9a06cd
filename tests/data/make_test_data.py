"""Rebuild the small test data in ``tests/data`` from ``../shared/data`` (run from the repo root).

    python tests/data/make_test_data.py [--shared ../shared/data]

Not collected by pytest. Every output is a reduced copy of a public image (see README.md here).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

HERE = Path(__file__).resolve().parent
FACTOR = 4  # in-plane block size of the small CT DICOM series
UID_SEED = "vmgga-tests-abdomen-ct-dicom"  # makes the generated UIDs reproducible


def block_mean(array_rc: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks of a (rows, cols) array (sizes divisible by factor)."""
    rows, cols = array_rc.shape
    blocks = array_rc.reshape(rows // factor, factor, cols // factor, factor)
    return blocks.astype(np.float64).mean(axis=(1, 3))


def block_mode(array_rc: np.ndarray, factor: int) -> np.ndarray:
    """Most frequent label of each ``factor x factor`` block (ties: the smallest label)."""
    rows, cols = array_rc.shape
    blocks = array_rc.reshape(rows // factor, factor, cols // factor, factor).swapaxes(1, 2)
    flat = blocks.reshape(rows // factor, cols // factor, factor * factor)
    labels = np.arange(int(array_rc.max()) + 1)
    counts = (flat[..., None] == labels).sum(axis=2)
    return counts.argmax(axis=-1).astype(array_rc.dtype)


def shrink_dicom_slice(ds: pydicom.Dataset, series_uid: str, study_uid: str, index: int) -> None:
    """Downsample one CT slice in place; the first voxel centre moves to the block centre."""
    pixels = ds.pixel_array
    small = np.round(block_mean(pixels, FACTOR)).astype(pixels.dtype)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    row_dir = np.asarray(ds.ImageOrientationPatient[:3], dtype=float)  # increasing column index
    col_dir = np.asarray(ds.ImageOrientationPatient[3:], dtype=float)  # increasing row index
    shift = (FACTOR - 1) / 2.0
    position = np.asarray(ds.ImagePositionPatient, dtype=float)
    position = position + shift * col_spacing * row_dir + shift * row_spacing * col_dir
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.PixelSpacing = [f"{row_spacing * FACTOR:.7g}", f"{col_spacing * FACTOR:.7g}"]
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.remove_private_tags()
    _set_uids(ds, series_uid, study_uid, index)


def _set_uids(ds: pydicom.Dataset, series_uid: str, study_uid: str, index: int) -> None:
    """The source has empty UIDs; give the series valid, reproducible ones."""
    ds.SOPClassUID = pydicom.uid.CTImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[UID_SEED, str(index)])
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesNumber = 3
    ds.StudyID = "1"
    ds.PatientName = "TEST^ABDOMEN"  # synthetic, so that PHI handling can be tested
    ds.PatientID = "VMGGA-TEST-0001"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def make_ct_dicom(source: Path, target: Path) -> None:
    """Write the 4x-downsampled series as ``slice_XX.dcm`` (sorted by position)."""
    target.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=[UID_SEED, "series"])
    study_uid = generate_uid(entropy_srcs=[UID_SEED, "study"])
    datasets = [pydicom.dcmread(p) for p in sorted(source.iterdir())]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    for index, ds in enumerate(datasets):
        shrink_dicom_slice(ds, series_uid, study_uid, index)
        ds.save_as(target / f"slice_{index:02d}.dcm", enforce_file_format=True)


def read_series(folder: Path) -> sitk.Image:
    """Read the one series of a folder with SimpleITK/GDCM."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def make_ct_dicom_labels(source_labels: Path, full_ct: sitk.Image, small_ct: sitk.Image, out: Path) -> None:
    """Labels on the full DICOM grid (nearest), then the mode of each 4x4 block on the small grid."""
    labels = sitk.ReadImage(str(source_labels))
    on_full = sitk.Resample(
        labels, full_ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID()
    )
    array_kji = sitk.GetArrayFromImage(on_full)
    small = np.stack([block_mode(plane, FACTOR) for plane in array_kji])
    image = sitk.GetImageFromArray(small)
    image.CopyInformation(small_ct)
    sitk.WriteImage(image, str(out), useCompression=True)


def check_extent(full: sitk.Image, small: sitk.Image) -> None:
    """The physical box (outer voxel corners) of both series must agree to 1e-3 mm."""
    for image_a, image_b in ((full, small),):
        for far in (False, True):
            corner_a = [n - 0.5 if far else -0.5 for n in image_a.GetSize()]
            corner_b = [n - 0.5 if far else -0.5 for n in image_b.GetSize()]
            pa = np.array(image_a.TransformContinuousIndexToPhysicalPoint(corner_a))
            pb = np.array(image_b.TransformContinuousIndexToPhysicalPoint(corner_b))
            if not np.allclose(pa, pb, atol=1e-3):
                raise RuntimeError(f"extent mismatch: {pa} vs {pb}")


def make_stroke(source: Path, target: Path, spacing_mm: float = 2.0) -> None:
    """Resample T1/T2/FLAIR to ``spacing_mm`` isotropic in their own (oblique) direction frame."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("T1", "T2", "FLAIR"):
        image = sitk.ReadImage(str(source / f"{name}.nii.gz"))
        size = [
            int(round(n * s / spacing_mm)) for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)
        ]
        # keep the box: the first voxel centre sits half a new voxel inside the old corner
        corner_ijk = [-0.5] * 3
        corner = np.array(image.TransformContinuousIndexToPhysicalPoint(corner_ijk))
        direction = np.array(image.GetDirection()).reshape(3, 3)
        origin = corner + direction @ np.full(3, spacing_mm / 2.0)
        smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), spacing_mm / 2.0)
        out = sitk.Resample(
            smooth,
            size,
            sitk.Transform(),
            sitk.sitkLinear,
            origin.tolist(),
            [spacing_mm] * 3,
            image.GetDirection(),
            0.0,
            sitk.sitkFloat32,
        )
        if image.GetPixelID() == sitk.sitkUInt8:
            out = sitk.Cast(sitk.Clamp(sitk.Round(out), sitk.sitkFloat32, 0, 255), sitk.sitkUInt8)
        sitk.WriteImage(out, str(target / f"{name}.nii.gz"), useCompression=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    shared = parser.parse_args().shared
    abdomen_src, abdomen = shared / "abdomen-ct-mr-totalseg", HERE / "abdomen"
    make_ct_dicom(abdomen_src / "example_ct_dicom", abdomen / "ct_dicom")
    full_ct, small_ct = read_series(abdomen_src / "example_ct_dicom"), read_series(abdomen / "ct_dicom")
    check_extent(full_ct, small_ct)
    make_ct_dicom_labels(
        abdomen_src / "example_seg_dicom.nii.gz", full_ct, small_ct, abdomen / "ct_dicom_labels.nii.gz"
    )
    for src, dst in (
        ("example_mr_sm", "mr"),
        ("example_seg_mr", "mr_labels"),
        ("example_ct_sm", "ct"),
        ("example_seg", "ct_labels"),
    ):
        shutil.copyfile(abdomen_src / f"{src}.nii.gz", abdomen / f"{dst}.nii.gz")
    shutil.copyfile(abdomen_src / "LICENSE", abdomen / "LICENSE")
    make_stroke(shared / "mr-stroke-t1-t2-flair", HERE / "stroke")
    shutil.copyfile(shared / "mr-stroke-t1-t2-flair" / "LICENSE", HERE / "stroke" / "LICENSE")
    brainweb = HERE / "brainweb"
    brainweb.mkdir(exist_ok=True)
    for png in sorted((shared / "brainweb-2d-t1-pd").glob("*.png")):
        shutil.copyfile(png, brainweb / png.name)


if __name__ == "__main__":
    main()
