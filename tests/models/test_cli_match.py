"""``vmgga match``: outputs, their conventions, and user errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from vmgga.cli.main import main
from vmgga.models import checkpoint
from vmgga.models.config import MatcherConfig
from vmgga.models.network import MatcherNet


def _texture(size=(96, 112), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 1, (size[0] // 4, size[1] // 4)).astype(np.float32)
    return cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _write_png(path, array):
    cv2.imwrite(str(path), (array * 255).astype(np.uint8))
    return path


def test_match_pngs_with_mind_writes_all_outputs(tmp_path):
    big = _texture((160, 176))
    image0, image1 = big[32:128, 32:144], big[16:112, 24:136]  # image0 pixel p is at p + (8, 16)
    paths = [_write_png(tmp_path / "a.png", image0), _write_png(tmp_path / "b.png", image1)]
    out = tmp_path / "out"
    assert (
        main(["match", *map(str, paths), "-o", str(out), "--backend", "mind", "--max-displacement", "32"])
        == 0
    )
    flow = np.load(out / "flow.npy")
    assert flow.shape == (2, 96, 112) and flow.dtype == np.float32
    assert np.median(flow[0, 24:72, 24:88]) == pytest.approx(8, abs=0.5)
    assert np.median(flow[1, 24:72, 24:88]) == pytest.approx(16, abs=0.5)
    assert cv2.imread(str(out / "confidence.png")).shape == (96, 112, 3)
    assert cv2.imread(str(out / "matches.png")).shape == (96, 224, 3)
    document = json.loads((out / "matches.json").read_text())
    assert document["matcher"]["backend"] == "mind" and document["flow_file"] == "flow.npy"
    first = document["matches"][0]
    assert (first["x0"], first["y0"]) == (8, 8)
    assert first["x1"] == pytest.approx(8 + float(flow[0, 8, 8]), abs=1e-3)
    assert all(0 <= m["confidence"] <= 1 for m in document["matches"])


def test_match_nifti_with_weights_writes_a_vector_flow_on_image0_grid(tmp_path):
    image = sitk.GetImageFromArray(_texture((48, 40)))
    image.SetSpacing((0.7, 1.3))
    image.SetOrigin((10.0, -4.0))
    sitk.WriteImage(image, str(tmp_path / "a.nii.gz"))
    sitk.WriteImage(image, str(tmp_path / "b.nii.gz"))
    torch.manual_seed(0)
    weights = checkpoint.save_checkpoint(
        MatcherNet(MatcherConfig()), tmp_path / "w.pt", {"note": "untrained"}
    )
    out = tmp_path / "out"
    args = [
        "match",
        str(tmp_path / "a.nii.gz"),
        str(tmp_path / "b.nii.gz"),
        "-o",
        str(out),
        "--weights",
        str(weights),
    ]
    assert main(args) == 0
    flow = sitk.ReadImage(str(out / "flow.nii.gz"))
    assert flow.GetNumberOfComponentsPerPixel() == 2 and flow.GetSize() == (40, 48)
    assert flow.GetSpacing() == pytest.approx((0.7, 1.3)) and flow.GetOrigin() == pytest.approx((10.0, -4.0))
    document = json.loads((out / "matches.json").read_text())
    assert document["matcher"]["record"] == {"note": "untrained"}


def test_user_errors_exit_2_with_a_message(tmp_path, capsys, monkeypatch):
    png = _write_png(tmp_path / "a.png", _texture())
    assert (
        main(
            ["match", str(png), str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"), "--backend", "mind"]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    _write_png(tmp_path / "flat.png", np.full((32, 32), 0.5, np.float32))
    assert (
        main(["match", str(png), str(tmp_path / "flat.png"), "-o", str(tmp_path / "o"), "--backend", "mind"])
        == 2
    )
    assert "constant" in capsys.readouterr().err
    volume = tmp_path / "v.nii.gz"
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkFloat32), str(volume))
    assert main(["match", str(volume), str(volume), "-o", str(tmp_path / "o"), "--backend", "mind"]) == 2
    assert "needs 2D" in capsys.readouterr().err
    monkeypatch.setattr(checkpoint, "SHIPPED_WEIGHTS", tmp_path / "absent.pt")
    assert main(["match", str(png), str(png), "-o", str(tmp_path / "o")]) == 2
    assert "no trained VMGGA matcher weights are shipped yet" in capsys.readouterr().err


def test_refine_and_smooth_options_reach_the_matcher(tmp_path):
    from vmgga.models.matcher2d import Matcher2D

    big = _texture((160, 176), seed=3)
    image0, image1 = big[32:128, 32:144], big[26:122, 37:149]  # image0 pixel p is at p + (-5, 6) in image1
    paths = [_write_png(tmp_path / "a.png", image0), _write_png(tmp_path / "b.png", image1)]
    tensors = [
        torch.from_numpy(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.float32))[None, None]
        for p in paths
    ]
    tensors = [(t - t.min()) / (t.max() - t.min()) for t in tensors]  # what normalise() gives here
    cases = {"default": ([], (12.0, 8.0)), "one pass": (["--refine", "0"], (None, None)),
             "no smoothing": (["--smooth", "0"], (12.0, None))}  # fmt: skip
    for name, (options, (refine, smooth)) in cases.items():
        out = tmp_path / name.replace(" ", "_")
        assert main(["match", *map(str, paths), "-o", str(out), "--backend", "mind", *options]) == 0
        document = json.loads((out / "matches.json").read_text())
        assert (document["matcher"]["refine_px"], document["matcher"]["smooth_px"]) == (refine, smooth)
        expected = Matcher2D("mind", refine_px=refine, smooth_px=smooth)(*tensors).flow_px[0].numpy()
        np.testing.assert_allclose(np.load(out / "flow.npy"), expected, atol=1e-3)
    flow = np.load(tmp_path / "default" / "flow.npy")
    assert np.median(flow[0, 24:72, 24:88]) == pytest.approx(-5, abs=0.5)
    assert np.median(flow[1, 24:72, 24:88]) == pytest.approx(6, abs=0.5)


def test_shipped_weights_recover_a_pure_shift_between_z_scored_real_slices(tmp_path):
    """Real FLAIR and T1 slices of one patient (the bundled 2 mm stroke volumes, upsampled to 1 mm and
    padded to 200 x 200), each z-scored over the whole slice so that the background is negative, the
    T1 moved by (+5, -7) px: every brain pixel's flow must be that shift (the default `vmgga match`)."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data" / "stroke"

    def axial(name: str) -> np.ndarray:
        plane = sitk.GetArrayFromImage(sitk.ReadImage(str(data / f"{name}.nii.gz")))[35].astype(np.float32)
        plane = cv2.resize(plane, (plane.shape[1] * 2, plane.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
        padded = np.zeros((200, 200), np.float32)
        top, left = (200 - plane.shape[0]) // 2, (200 - plane.shape[1]) // 2
        padded[top : top + plane.shape[0], left : left + plane.shape[1]] = plane
        return padded

    flair, t1 = axial("FLAIR"), axial("T1")
    brain = (flair > 0) & (t1 > 0)
    z_flair, z_t1 = ((v - v.mean()) / v.std() for v in (flair, t1))
    moved = np.full_like(z_t1, z_t1.min())
    moved[:-7, 5:] = z_t1[7:, :-5]  # content moves 5 px right (+x) and 7 px up (-y)
    paths = [tmp_path / "flair.nii.gz", tmp_path / "t1_moved.nii.gz"]
    for path, array in zip(paths, (z_flair, moved), strict=True):
        sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.float32)), str(path))
    assert main(["match", *map(str, paths), "-o", str(tmp_path / "out")]) == 0
    flow = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "flow.nii.gz")))  # (H, W, 2): x, y
    error = np.hypot(flow[..., 0] - 5.0, flow[..., 1] + 7.0)[brain]
    assert np.median(error) <= 1.0
    assert (error <= 2.0).mean() >= 0.8
