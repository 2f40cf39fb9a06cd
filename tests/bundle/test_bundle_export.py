"""``ckpt_export`` writes a TorchScript (traced) matcher that computes what the eager network computes."""

from __future__ import annotations

import json

import pytest
import torch
from bundle_helpers import BUNDLE, INFERENCE, METADATA

from vmgga.models.checkpoint import save_checkpoint
from vmgga.models.network import MatcherNet


def _checkpoint(tmp_path):
    """The bundle's ``models/model.pt`` when shipped, else a checkpoint of the default architecture."""
    shipped = BUNDLE / "models" / "model.pt"
    if shipped.is_file():
        return shipped
    torch.manual_seed(0)
    return save_checkpoint(
        MatcherNet().eval(), tmp_path / "model.pt", {"note": "random weights for the export test"}
    )


@pytest.mark.slow  # tracing + MONAI's trace check: ~30 s of CPU
def test_ckpt_export_traces_the_matcher(tmp_path):
    from monai.bundle import ckpt_export

    ckpt = _checkpoint(tmp_path)
    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def", filepath=str(exported), ckpt_file=str(ckpt), key_in_ckpt="state_dict",
        meta_file=str(METADATA), config_file=str(INFERENCE), bundle_root=str(BUNDLE),
        use_trace=True, input_shape=[1, 2, 64, 64],
    )  # fmt: skip
    extra = {"metadata.json": "", "inference.json": ""}
    traced = torch.jit.load(str(exported), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == json.loads(METADATA.read_text())["version"]
    eager = MatcherNet.from_checkpoint(ckpt).eval()
    generator = torch.Generator().manual_seed(1)
    for shape in [(1, 2, 64, 64), (2, 2, 48, 80)]:
        pair = torch.rand(shape, generator=generator)
        with torch.no_grad():
            expected, actual = eager(pair), traced(pair)
        assert actual.shape == (shape[0], 3, *shape[2:])
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
