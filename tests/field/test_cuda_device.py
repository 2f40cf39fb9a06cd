"""``--device cuda`` runs the whole pipeline on the GPU and agrees with the CPU (skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from vmgga import register
from vmgga.config import make_config
from vmgga.dense.stage import estimate_dense_field

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
STROKE = Path(__file__).resolve().parents[1] / "data" / "stroke"


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A blob volume and the same volume shifted by 1.5 voxels along i, ``(1, 1, 40, 44, 48)``."""
    k, j, i = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in (40, 44, 48)], indexing="ij")
    blob = lambda di: torch.exp(-(((i - 24 - di) / 9) ** 2 + ((j - 22) / 8) ** 2 + ((k - 20) / 7) ** 2))  # noqa: E731
    return blob(0.0)[None, None], blob(1.5)[None, None]


@CUDA
def test_dense_stage_on_cuda_matches_cpu():
    fixed, moving = _pair()
    config = make_config("fast", **{"dense.matching.matcher": "cost_volume"}).dense
    on_gpu = estimate_dense_field(fixed, moving, config, device="cuda")
    on_cpu = estimate_dense_field(fixed, moving, config, device="cpu")
    assert on_gpu.disp_ijk.device.type == "cuda"
    assert torch.allclose(on_gpu.disp_ijk.cpu(), on_cpu.disp_ijk, atol=0.05)


@CUDA
@pytest.mark.parametrize("preset", ["fast", "accurate"])
def test_register_runs_on_cuda_like_on_cpu(preset):
    fixed, moving = str(STROKE / "T1.nii.gz"), str(STROKE / "FLAIR.nii.gz")
    gpu = register(fixed, moving, make_config(preset, device="cuda"), progress=False)
    cpu = register(fixed, moving, make_config(preset, device="cpu"), progress=False)
    assert gpu.report["environment"]["device"] == "cuda"
    reference = gpu.fixed
    disp = [
        sitk.GetArrayFromImage(
            sitk.TransformToDisplacementField(
                r.transform,
                sitk.sitkVectorFloat64,
                reference.GetSize(),
                reference.GetOrigin(),
                reference.GetSpacing(),
                reference.GetDirection(),
            )
        )
        for r in (gpu, cpu)
    ]
    assert np.abs(disp[0] - disp[1]).mean() < 0.1  # mm: same algorithm, float order differs
    assert gpu.report["jacobian"]["negative_fraction"] == 0.0
