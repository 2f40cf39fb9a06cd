"""MatcherNet: shapes, frames (flow channels x, y), shift recovery, tracing, checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from vmgga.errors import ConfigError, InputError
from vmgga.models import head
from vmgga.models.checkpoint import save_checkpoint
from vmgga.models.config import MatcherConfig, matcher_config_from_dict
from vmgga.models.network import MatcherNet


def _noise(size: int = 160, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _shifted_pair(shift_xy: tuple[int, int], size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """image1(x, y) = image0(x - sx, y - sy): pixel p of image0 is found at p + shift in image1."""
    big, (sx, sy), lo = _noise(), shift_xy, 32
    image0 = big[..., lo : lo + size, lo : lo + size]
    image1 = big[..., lo - sy : lo - sy + size, lo - sx : lo - sx + size]
    return image0.contiguous(), image1.contiguous()


@pytest.fixture(scope="module")
def net() -> MatcherNet:
    torch.manual_seed(0)
    return MatcherNet(MatcherConfig()).eval()


def test_match_shapes_and_ranges_on_odd_sizes(net):
    image0, image1 = torch.rand(2, 1, 45, 53), torch.rand(2, 1, 45, 53)
    with torch.no_grad():
        result = net.match(image0, image1)
    tokens = 6 * 7  # ceil(45 / 8) * ceil(53 / 8)
    assert result.flow_px.shape == (2, 2, 45, 53)
    assert result.confidence.shape == (2, 1, 45, 53)
    assert result.coarse_prob.shape == (2, tokens, tokens)
    assert result.coarse_flow_px.shape == (2, 2, 6, 7)
    assert result.fine_offset_px.shape == (2, 2, 24, 28)
    assert [f.shape[-1] for f in result.features0] == [28, 14, 7]
    assert float(result.confidence.min()) >= 0 and float(result.confidence.max()) <= 1
    assert float(result.coarse_prob.min()) >= 0 and float(result.coarse_prob.max()) <= 1


@pytest.mark.parametrize("shift_xy", [(8, 16), (8, -8)])
def test_untrained_network_recovers_integer_shift(shift_xy):
    """Identical content shifted by whole coarse cells: random features still match exactly."""
    torch.manual_seed(0)
    sharp = MatcherNet(MatcherConfig(fine_temperature=1e-3)).eval()
    image0, image1 = _shifted_pair(shift_xy)
    with torch.no_grad():
        result = sharp.match(image0, image1)
    interior = result.flow_px[0, :, 26:68, 26:68]  # away from content that left the image
    expected = torch.tensor(shift_xy, dtype=torch.float32).view(2, 1, 1).expand_as(interior)
    torch.testing.assert_close(interior, expected, atol=0.05, rtol=0)
    coarse = result.coarse_flow_px[0, :, 4:8, 4:8]
    assert torch.equal(coarse, expected[:, :4, :4])


def test_flow_channels_are_x_then_y(net):
    """A shift along W only gives flow in channel 0 only (frames: x = column, y = row)."""
    image0, image1 = _shifted_pair((8, 0))
    with torch.no_grad():
        flow = net.match(image0, image1).flow_px[0, :, 26:68, 26:68]
    assert torch.allclose(flow[0].median(), torch.tensor(8.0), atol=0.5)
    assert torch.allclose(flow[1].median(), torch.tensor(0.0), atol=0.5)


@pytest.mark.parametrize("shift_xy", [(6, -10), (-14, 4), (0, 0)])
def test_head_recovers_shift_exactly_from_distinct_descriptors(shift_xy):
    """Coarse dual-softmax + fine window + expectation on white-noise descriptors (fine stride 2).

    The shift is not a multiple of the coarse stride, so the fine stage must correct the coarse one.
    """
    config = MatcherConfig()
    sx, sy = shift_xy[0] // 2, shift_xy[1] // 2  # in fine cells
    gen = torch.Generator().manual_seed(1)
    big = torch.randn(1, 256, 80, 80, generator=gen)
    fine0 = big[..., 16:64, 16:64]
    fine1 = big[..., 16 - sy : 64 - sy, 16 - sx : 64 - sx]
    coarse0, coarse1 = F.avg_pool2d(fine0, 4), F.avg_pool2d(fine1, 4)
    _, coarse_flow, _ = head.coarse_match(coarse0, coarse1, config)
    flow, _, _, _ = head.fine_match(fine0, fine1, coarse_flow, config)
    interior = flow[0, :, 12:36, 12:36]
    expected = torch.tensor(shift_xy, dtype=torch.float32).view(2, 1, 1).expand_as(interior)
    torch.testing.assert_close(interior, expected, atol=1e-3, rtol=0)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_forward_pair_traces_and_matches_eager():
    torch.manual_seed(0)
    net = MatcherNet(
        MatcherConfig(encoder_channels=(8, 16, 16), coarse_dim=16, fine_dim=8, fine_window=3)
    ).eval()
    pair = torch.rand(1, 2, 48, 40)
    with torch.no_grad():
        eager = net(pair)
        traced = torch.jit.trace(net, pair, check_trace=False)
        again = traced(pair)
    assert eager.shape == (1, 3, 48, 40)
    torch.testing.assert_close(again, eager)
    other = torch.rand(1, 2, 48, 40)
    with torch.no_grad():
        torch.testing.assert_close(traced(other), net(other))


def test_checkpoint_round_trip_rebuilds_identical_model(tmp_path):
    config = MatcherConfig(encoder_channels=(8, 16, 24), coarse_dim=32, fine_dim=16, use_gating=False)
    torch.manual_seed(3)
    model = MatcherNet(config).eval()
    path = save_checkpoint(model, tmp_path / "m.pt", record={"seed": 3, "steps": 0})
    loaded = MatcherNet.from_checkpoint(path)
    assert loaded.config == config and loaded.record == {"seed": 3, "steps": 0}
    pair = torch.rand(1, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pair), model(pair), rtol=0, atol=0)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(InputError, match="do not exist"):
        MatcherNet.from_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="not a VMGGA matcher checkpoint"):
        MatcherNet.from_checkpoint(tmp_path / "bad.pt")


def test_config_validation_and_dict_round_trip():
    config = MatcherConfig(pyramid_strides=(2, 4, 8), use_visual_guidance=False)
    assert matcher_config_from_dict(dataclasses.asdict(config)) == config
    with pytest.raises(ConfigError, match="backend"):
        MatcherConfig(backend="clip")
    with pytest.raises(ConfigError, match="coarse_stride"):
        MatcherConfig(coarse_stride=16)
    with pytest.raises(ConfigError, match="fine_window"):
        MatcherConfig(fine_window=4)
    with pytest.raises(ConfigError, match="unknown MatcherConfig fields"):
        matcher_config_from_dict({"colour": 1})


@pytest.mark.parametrize(
    "switches",
    [
        {"use_visual_guidance": False},
        {"use_gating": False},
        {"use_mind_fusion": False},
        {"attention": "linear"},
    ],
)
def test_ablation_switches_build_and_match(switches):
    torch.manual_seed(0)
    model = MatcherNet(MatcherConfig(**switches)).eval()
    with torch.no_grad():
        result = model.match(torch.rand(1, 1, 40, 40), torch.rand(1, 1, 40, 40))
    assert result.flow_px.shape == (1, 2, 40, 40)
    has_gate = hasattr(model, "coarse_mind_gate")
    assert has_gate == (switches.get("use_visual_guidance", True) and switches.get("use_mind_fusion", True))


def test_bad_image_shape_is_an_input_error(net):
    with pytest.raises(InputError, match=r"\(B, 1, H, W\)"):
        net.match(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))


def test_patch_mind_encoding_builds_and_old_checkpoints_keep_pooled(tmp_path):
    torch.manual_seed(0)
    patch = MatcherNet(MatcherConfig(mind_encoding="patch")).eval()
    assert patch.coarse_mind_gate.mind_proj.in_channels == 4 * 16  # 4x4 sub-cells of 4 MIND channels
    assert (
        patch.fine_mind_gate.mind_proj.in_channels == 4 * 4
        and patch.fine_mind_gate.mind_proj.kernel_size == (3, 3)
    )
    with torch.no_grad():
        assert patch.match(torch.rand(1, 1, 40, 48), torch.rand(1, 1, 40, 48)).flow_px.shape == (1, 2, 40, 48)
    legacy = dataclasses.asdict(MatcherConfig())
    del legacy["mind_encoding"]  # checkpoints written before the field existed
    assert matcher_config_from_dict(legacy).mind_encoding == "pooled"
    with pytest.raises(ConfigError, match="mind_encoding"):
        MatcherConfig(mind_encoding="raw")
