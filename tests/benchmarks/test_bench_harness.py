"""Skip logic without the shared data, and the stroke harness end to end on a tiny synthetic set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from benchmarks import abdomen_ct_mr, common, ct_mr_head_hu, half_turn_search, peers, stroke_known_deformation


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        (stroke_known_deformation, ["--methods", "identity"]),
        (abdomen_ct_mr, ["--methods", "identity"]),
        (ct_mr_head_hu, ["--methods", "identity"]),
        (half_turn_search, []),
    ],
)
def test_benchmarks_skip_cleanly_without_data(module, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(common.DATA_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as stopped:
        module.main(argv)
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "skipped:" in out and "absent" in out


def test_skip_message_names_the_missing_file(tmp_path, monkeypatch, capsys):
    folder = tmp_path / stroke_known_deformation.DATASET
    folder.mkdir()
    (folder / "T1.nii.gz").write_bytes(b"")
    monkeypatch.setenv(common.DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        stroke_known_deformation.main(["--methods", "identity"])
    assert stopped.value.code == 0
    assert f"skipped: {folder / 'T2.nii.gz'} absent" in capsys.readouterr().out


def test_parse_methods_rejects_unknown_names():
    assert peers.parse_methods("identity, ants") == ["identity", "ants"]
    with pytest.raises(ValueError, match="method='syn' is not allowed"):
        peers.parse_methods("syn")


def _tiny_stroke_set(folder) -> None:
    """T1/T2/FLAIR stand-ins on an oblique 1 mm grid: a smooth blob, zero outside a ball."""
    folder.mkdir(parents=True)
    k, j, i = np.mgrid[0:22, 0:24, 0:26].astype(np.float32)
    radius = np.sqrt((i - 13) ** 2 + (j - 12) ** 2 + (k - 11) ** 2)
    for name, scale in (("T1", 1.0), ("T2", -1.0), ("FLAIR", 0.5)):
        array = np.where(radius < 9, 100 + scale * 40 * np.cos(i / 3.0) * np.sin(j / 4.0), 0)
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.SetDirection(sitk.Euler3DTransform((0, 0, 0), 0.1, 0.2, -0.3).GetMatrix())
        image.SetOrigin((5.0, -3.0, 8.0))
        sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))


def test_stroke_harness_identity_row_equals_true_displacement(tmp_path, monkeypatch):
    _tiny_stroke_set(tmp_path / stroke_known_deformation.DATASET)
    monkeypatch.setenv(common.DATA_ENV_VAR, str(tmp_path))
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    argv = ["--methods", "identity", "--seeds", "4", "--moving", "T2", "--threads", "1", "--name", "tiny"]
    assert stroke_known_deformation.main(argv) == 0
    payload = json.loads((tmp_path / "results" / "tiny.json").read_text())
    row = payload["rows"][0]
    assert (row["method"], row["pair"], row["status"]) == ("identity", "seed4-T2", "ok")
    t1 = sitk.ReadImage(str(tmp_path / stroke_known_deformation.DATASET / "T1.nii.gz"), sitk.sitkFloat32)
    phi = common.bspline_deformation(t1, common.BSplineDeformationSpec(seed=4))
    mask = sitk.GetArrayFromImage(common.resample(t1, t1, phi)) > 0
    magnitudes = np.linalg.norm(common.displacement_lps_mm(phi, t1), axis=-1)[mask]
    assert row["tre_mean_mm"] == pytest.approx(magnitudes.mean(), rel=1e-6)
    assert row["fold_pct_grid"] == 0.0
    assert payload["machine"]["cpu_count"] >= 1
    markdown = (tmp_path / "results" / "tiny.md").read_text()
    assert f"| identity | 1 | 0.000 | {magnitudes.mean():.3f} |" in markdown  # summary row
    assert payload["status"] == "complete"


def _tiny_abdomen_set(folder) -> None:
    """CT and MR stand-ins on one grid; the MR labels are the CT labels shifted by 2 voxels along i."""
    folder.mkdir(parents=True)
    labels = np.zeros((6, 10, 12), np.uint8)
    labels[1:5, 2:8, 2:6] = 1  # 96 voxels
    labels[1:5, 2:8, 7:11] = 5  # 96 voxels, becomes 11:12 + out of view when shifted
    shifted = np.zeros_like(labels)
    shifted[:, :, 2:] = labels[:, :, :-2]
    for image_name, label_name, array in (
        ("example_ct_sm.nii.gz", "example_seg.nii.gz", labels),
        ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz", shifted),
    ):
        for name, values in ((image_name, array.astype(np.int16) * 100), (label_name, array)):
            image = sitk.GetImageFromArray(values)
            image.SetSpacing((3.0, 3.0, 3.0))
            sitk.WriteImage(image, str(folder / name))


def test_abdomen_harness_identity_dice(tmp_path, monkeypatch):
    _tiny_abdomen_set(tmp_path / abdomen_ct_mr.DATASET)
    monkeypatch.setenv(common.DATA_ENV_VAR, str(tmp_path))
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    assert abdomen_ct_mr.main(["--methods", "identity", "--threads", "1", "--name", "tiny"]) == 0
    row = json.loads((tmp_path / "results" / "tiny.json").read_text())["rows"][0]
    # label 1: boxes of 4 x 6 x 4 shifted by 2 along i -> overlap 4 x 6 x 2
    assert row["dice_spleen"] == pytest.approx(2 * 48 / (96 + 96))
    # label 5: shifted box keeps 4 x 6 x 3 voxels in view (i = 9..11), overlap i = 9..10
    assert row["dice_liver"] == pytest.approx(2 * 48 / (96 + 72))
    assert row["dice_stomach"] != row["dice_stomach"]  # NaN: absent from both maps
    assert row["dice_mean"] == pytest.approx(np.mean([2 * 48 / 192, 2 * 48 / 168]))


def test_our_benchmark_variants_are_valid_configs_with_the_named_matcher():
    from vmgga.config import make_config
    from vmgga.matching.registry import resolve_matcher_name

    expected = {
        "vmgga-mind": "cost_volume",
        "vmgga-learned": "vmgga",
        "vmgga-fused": "fused",
        "vmgga-learned-start": "vmgga",
        "vmgga-hybrid": "vmgga",
        "vmgga-mind-matches": "cost_volume",
        "vmgga-learned-matches": "vmgga",
        "vmgga-vmgga": "vmgga",
    }
    for method, matcher in expected.items():
        config = make_config("fast", **peers.VMGGA_VARIANTS[method])
        assert resolve_matcher_name(config.dense) == matcher
        assert peers.uses_matcher_weights(method) == (matcher != "cost_volume")
        assert method in peers.PEERS
