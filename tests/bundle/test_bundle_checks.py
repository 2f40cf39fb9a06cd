"""The checks MONAI users run on a bundle pass offline: verify_metadata and verify_net_in_out."""

from __future__ import annotations

import hashlib
import json

import pytest
from bundle_helpers import BUNDLE, INFERENCE, METADATA, SCHEMA

#: md5 of the vendored official schema (meta_schema_20240725.json of MONAI-extra-test-data 0.8.1).
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"


def test_vendored_schema_is_the_one_metadata_names():
    metadata = json.loads(METADATA.read_text())
    assert metadata["schema"].endswith("/" + SCHEMA.name)
    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == SCHEMA_MD5


def test_verify_metadata_passes_offline():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(METADATA), filepath=str(SCHEMA), hash_val=SCHEMA_MD5, hash_type="md5")


def test_verify_metadata_rejects_metadata_without_version(tmp_path):
    from monai.bundle import verify_metadata

    metadata = json.loads(METADATA.read_text())
    del metadata["version"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="version"):
        verify_metadata(meta_file=str(broken), filepath=str(SCHEMA))


@pytest.mark.parametrize("direction", ["inputs", "outputs"])
def test_network_io_declares_modality_space_units(direction):
    formats = json.loads(METADATA.read_text())["network_data_format"][direction]
    for tensor in formats.values():
        for key in ("modality", "num_channels", "spatial_shape", "dtype", "value_range", "space", "units"):
            assert key in tensor, f"{direction} lacks {key}"
        assert "LPS" in tensor["space"]


def test_verify_net_in_out_passes():
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def", meta_file=str(METADATA), config_file=str(INFERENCE), device="cpu", n=8,
        bundle_root=str(BUNDLE),
    )  # fmt: skip


def test_verify_net_in_out_catches_a_wrong_declaration():
    from monai.bundle import verify_net_in_out

    with pytest.raises(ValueError, match="output channel number"):
        verify_net_in_out(
            net_id="network_def", meta_file=str(METADATA), config_file=str(INFERENCE), device="cpu", n=8,
            bundle_root=str(BUNDLE), **{"_meta_#network_data_format#outputs#pred#num_channels": 2},
        )  # fmt: skip


def test_bundle_weights_are_the_package_weights():
    """``models/model.pt`` is a copy of the shipped weights; a stale copy would silently differ."""
    from vmgga.models.checkpoint import SHIPPED_WEIGHTS

    bundle_weights = BUNDLE / "models" / "model.pt"
    if not (bundle_weights.is_file() and SHIPPED_WEIGHTS.is_file()):
        pytest.skip("training-free bundle: no weights shipped")
    assert bundle_weights.read_bytes() == SHIPPED_WEIGHTS.read_bytes(), (
        f"copy {SHIPPED_WEIGHTS} to {bundle_weights} (the package weights changed)"
    )
