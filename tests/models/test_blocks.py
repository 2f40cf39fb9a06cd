"""Building blocks: gated residual, MIND gate, attention kinds, 2D MIND-SSC, confidence head."""

from __future__ import annotations

import itertools

import torch

from vmgga.models.attention import GatedResidual, full_attention, linear_attention
from vmgga.models.fusion import MindGate
from vmgga.models.head import (
    ConfidenceHead,
    dual_softmax,
    local_expectation,
    window_correlation,
    window_offsets,
)
from vmgga.models.mind2d import mind_ssc_2d, shift_2d


def test_gate_is_in_open_unit_interval():
    torch.manual_seed(0)
    block = GatedResidual(8)
    x, message = 10 * torch.randn(2, 5, 8), 10 * torch.randn(2, 5, 8)
    with torch.no_grad():
        gate = block.gate(x, message)
    assert gate.shape == (2, 5, 8)
    assert float(gate.min()) > 0 and float(gate.max()) < 1
    with torch.no_grad():
        torch.testing.assert_close(block(x, message), x + gate * message)


def test_saturated_gate_reduces_to_plain_residual_and_closed_gate_to_identity():
    block, plain = GatedResidual(4), GatedResidual(4, use_gating=False)
    x, message = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    with torch.no_grad():
        block.gate_proj.weight.zero_()
        block.gate_proj.bias.fill_(50.0)
    torch.testing.assert_close(block(x, message), x + message)
    torch.testing.assert_close(plain(x, message), x + message)
    with torch.no_grad():
        block.gate_proj.bias.fill_(-50.0)
    torch.testing.assert_close(block(x, message), x)


def test_mind_gate_mixes_per_location():
    torch.manual_seed(0)
    gate = MindGate(6, 4)
    visual, mind = torch.randn(1, 6, 5, 5), torch.rand(1, 4, 5, 5)
    weight = gate.gate(visual, gate.mind_proj(mind))
    assert weight.shape == (1, 1, 5, 5) and 0 < float(weight.min()) and float(weight.max()) < 1
    expected = weight * visual + (1 - weight) * gate.mind_proj(mind)
    torch.testing.assert_close(gate(visual, mind), expected)


def test_linear_attention_equals_explicit_kernel_formula():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 7, 4), torch.randn(1, 2, 7, 4)
    phi_q, phi_k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    weights = phi_q @ phi_k.transpose(-1, -2)  # (1, 2, 5, 7)
    expected = (weights / weights.sum(-1, keepdim=True)) @ v
    torch.testing.assert_close(linear_attention(q, k, v), expected, atol=1e-5, rtol=1e-4)
    explicit = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v
    torch.testing.assert_close(full_attention(q, k, v), explicit, atol=1e-5, rtol=1e-4)


def test_dual_softmax_of_diagonal_logits_peaks_on_diagonal():
    logits = 10 * torch.eye(4)[None]
    prob = dual_softmax(logits)
    assert torch.equal(prob[0].argmax(dim=1), torch.arange(4))
    expected = (torch.e**10 / (torch.e**10 + 3)) ** 2
    torch.testing.assert_close(prob[0].diagonal(), torch.full((4,), expected))


def test_mind_2d_is_invariant_to_affine_intensity_changes():
    torch.manual_seed(0)
    image = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 40, 40), 3, 1, 1)
    mind = mind_ssc_2d(image)
    assert mind.shape == (1, 4, 40, 40)
    assert float(mind.min()) > 0 and float(mind.max()) <= 1 + 1e-6
    torch.testing.assert_close(mind_ssc_2d(3.0 - 2.5 * image), mind, atol=1e-5, rtol=1e-4)


def test_shift_2d_reads_the_offset_pixel():
    image = torch.arange(30.0).view(1, 1, 5, 6)
    shifted = shift_2d(image, dx=2, dy=1)
    assert shifted[0, 0, 1, 1] == image[0, 0, 2, 3]
    assert shifted[0, 0, 4, 5] == image[0, 0, 4, 5]  # replicated edge


def test_confidence_head_starts_at_mean_logit():
    head = ConfidenceHead(8)
    p_coarse, p_fine = torch.full((1, 1, 2, 2), 0.9), torch.full((1, 1, 2, 2), 0.5)
    confidence = head(p_coarse, p_fine, torch.full((1, 1, 2, 2), 0.7))
    logit = 0.5 * (torch.log(torch.tensor(0.9 / 0.1)) + 0.0)
    torch.testing.assert_close(confidence, torch.sigmoid(logit).expand(1, 1, 2, 2))


def test_window_correlation_equals_brute_force():
    """Block-wise matrix-product correlation vs. an explicit loop over cells and offsets."""
    gen = torch.Generator().manual_seed(0)
    desc0, desc1 = torch.randn(2, 5, 8, 12, generator=gen), torch.randn(2, 5, 9, 11, generator=gen)
    flow_cells = torch.randint(-3, 4, (2, 2, 2, 3), generator=gen).float()  # ratio 4 -> (8, 12) cells
    correlation = window_correlation(desc0, desc1, flow_cells, ratio=4, window=3)
    offsets = window_offsets(3, desc0)
    expected = torch.zeros(2, 9, 8, 12)
    for b, y, x, k in itertools.product(range(2), range(8), range(12), range(9)):
        tx = x + int(flow_cells[b, 0, y // 4, x // 4]) + int(offsets[k, 0])
        ty = y + int(flow_cells[b, 1, y // 4, x // 4]) + int(offsets[k, 1])
        if 0 <= tx < 11 and 0 <= ty < 9:
            expected[b, k, y, x] = (desc0[b, :, y, x] * desc1[b, :, ty, tx]).sum()
    torch.testing.assert_close(correlation, expected, atol=1e-5, rtol=1e-5)


def test_local_expectation_is_exact_for_a_symmetric_peak():
    offsets = window_offsets(5, torch.zeros(1))
    target = torch.tensor([1.0, -1.0])
    logits = -((offsets - target) ** 2).sum(dim=1).view(1, 25, 1, 1) * 4.0  # peak at (1, -1)
    offset, peak, mass = local_expectation(logits, offsets)
    torch.testing.assert_close(offset[0, :, 0, 0], target)
    assert 0 < float(peak) <= float(mass) <= 1


def test_first_level_is_the_pyramid_s_first_level_without_the_coarser_stages():
    from vmgga.models.config import MatcherConfig
    from vmgga.models.encoder import CnnEncoder, MindEncoder

    torch.manual_seed(0)
    image = torch.rand(2, 1, 16, 24)
    mind = mind_ssc_2d(image, 1, 2)
    for encoder in (CnnEncoder(MatcherConfig()).eval(), MindEncoder(MatcherConfig())):
        pyramid = encoder(image, mind)
        assert len(pyramid) == 3
        torch.testing.assert_close(encoder.first_level(image, mind), pyramid[0], rtol=0, atol=0)
