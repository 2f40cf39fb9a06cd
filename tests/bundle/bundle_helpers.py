"""Helpers of the MONAI bundle tests: bundle paths, the test pair, quick settings, transform checks.

A plain module (not ``conftest``) so that ``from bundle_helpers import ...`` is unambiguous.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "monai_bundle"
CONFIGS = BUNDLE / "configs"
INFERENCE = CONFIGS / "inference.json"
EVALUATE = CONFIGS / "evaluate.json"
METADATA = CONFIGS / "metadata.json"
SCHEMA = BUNDLE / "schema" / "meta_schema_20240725.json"

ABDOMEN = REPO / "tests" / "data" / "abdomen"
CT_DICOM = ABDOMEN / "ct_dicom"
CT_DICOM_LABELS = ABDOMEN / "ct_dicom_labels.nii.gz"
CT_NIFTI = ABDOMEN / "ct.nii.gz"
MR_NIFTI = ABDOMEN / "mr.nii.gz"
MR_LABELS = ABDOMEN / "mr_labels.nii.gz"

#: Coarse, short settings so that one registration of the test pair takes seconds on one thread.
#: One thread also makes the result bit-reproducible across processes.
QUICK_OVERRIDES = {
    "preprocess.working_spacing_mm": 6.0,
    "affine.iterations": 30,
    "dense.instance.iterations": 10,
    "num_threads": 1,
}

#: Non-zero: SimpleITK reads a sampling seed of 0 as "seed from the wall clock" (not reproducible).
SEED = 1


def library_config():
    """The config ``vmgga register --preset fast --device cpu`` would use with :data:`QUICK_OVERRIDES`
    (the preset runs no network, so the bundle's weights are not part of it).

    Built with :func:`vmgga.make_config` directly (not through the bundle adapters).
    """
    import vmgga

    sections = {k: v for k, v in QUICK_OVERRIDES.items() if "." in k}
    top = {k: v for k, v in QUICK_OVERRIDES.items() if "." not in k}
    return dataclasses.replace(vmgga.make_config("fast", **sections), device="cpu", seed=SEED, **top)


def run_bundle_cli(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` in a fresh process; returns the finished process."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def quick_overrides_arg() -> str:
    """:data:`QUICK_OVERRIDES` as a command-line value (``--overrides '{...}'``)."""
    return json.dumps(QUICK_OVERRIDES)


def transform_leaves(path: Path) -> list[sitk.Transform]:
    """The linear and displacement-field transforms inside a ``transform.h5`` composite, in order."""
    transform = sitk.ReadTransform(str(path))
    composite = sitk.CompositeTransform(transform)
    return [composite.GetNthTransform(n) for n in range(composite.GetNumberOfTransforms())]


def assert_same_transform_files(actual: Path, expected: Path, fixed: sitk.Image, atol: float = 1e-5) -> None:
    """Equal sub-transform kinds and parameters, and equal mapped points (mm) inside ``fixed``."""
    leaves_a, leaves_e = transform_leaves(actual), transform_leaves(expected)
    assert [t.GetName() for t in leaves_a] == [t.GetName() for t in leaves_e]
    for a, e in zip(leaves_a, leaves_e, strict=True):
        np.testing.assert_allclose(a.GetFixedParameters(), e.GetFixedParameters(), atol=atol)
        np.testing.assert_allclose(a.GetParameters(), e.GetParameters(), atol=atol)
    full_a, full_e = sitk.ReadTransform(str(actual)), sitk.ReadTransform(str(expected))
    rng = np.random.default_rng(0)
    size = np.array(fixed.GetSize()) - 1
    for ijk in rng.uniform(0, 1, size=(50, 3)) * size:
        point = fixed.TransformContinuousIndexToPhysicalPoint(ijk.tolist())
        np.testing.assert_allclose(full_a.TransformPoint(point), full_e.TransformPoint(point), atol=1e-4)
