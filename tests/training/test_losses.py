"""Each loss against a value computed by hand on a tiny constructed case."""

from __future__ import annotations

import math

import pytest
import torch

from vmgga.training import losses


def test_info_nce_orthogonal_one_hot_matches_hand_value():
    n, temperature = 5, 0.5
    desc = torch.eye(n)[None]  # (1, 5, 5): descriptor i = e_i, positives identical, negatives orthogonal
    expected = -math.log(math.exp(1 / temperature) / (math.exp(1 / temperature) + (n - 1) * math.exp(0)))
    assert losses.info_nce(desc, desc, temperature).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_hardest_negatives_keeps_k_most_similar():
    # anchor 0 has negatives with similarity 0.8 (index 1) and 0 (others)
    d0 = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    d1 = torch.tensor([[[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]]])
    t = 1.0
    logits = torch.einsum("nc,mc->nm", d0[0], d1[0])

    def row(i, j):  # loss of anchor i with the single hardest negative j
        return -(logits[i, i] - torch.logsumexp(torch.stack([logits[i, i], logits[i, j]]), 0))

    forward = (row(0, 1) + row(1, 0) + row(2, 0 if logits[2, 0] >= logits[2, 1] else 1)) / 3
    lt = logits.T

    def col(i, j):
        return -(lt[i, i] - torch.logsumexp(torch.stack([lt[i, i], lt[i, j]]), 0))

    backward = (col(0, 1) + col(1, 0) + col(2, 0 if lt[2, 0] >= lt[2, 1] else 1)) / 3
    value = losses.info_nce(d0, d1, t, hardest_negatives=1)
    assert value.item() == pytest.approx(0.5 * (forward + backward).item(), rel=1e-5)


def test_info_nce_negative_mask_excludes_pairs():
    desc = torch.eye(4)[None]
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :, 0] = True  # only column 0 may be a negative (rows 1..3); row 0 has no negative
    value = losses.info_nce(desc, desc, 1.0, negative_mask=mask)
    forward = 3 * -math.log(math.e / (math.e + 1.0)) / 4  # rows 1..3: one negative each; row 0 none
    backward = -math.log(math.e / (math.e + 3.0)) / 4  # column 0 sees three negatives; others none
    assert value.item() == pytest.approx(0.5 * (forward + backward), rel=1e-6)


def test_coarse_nll_of_one_hot_and_uniform():
    prob = torch.zeros(1, 3, 4)
    prob[0, 0, 2] = prob[0, 1, 0] = prob[0, 2, 3] = 1.0
    index = torch.tensor([[2, 0, 3]])
    ok = torch.ones(1, 3, dtype=torch.bool)
    assert losses.coarse_nll(prob, index, ok).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((1, 3, 4), 0.25)
    assert losses.coarse_nll(uniform, index, ok).item() == pytest.approx(math.log(4), rel=1e-6)
    ok[0, 0] = False  # a wrong match on an excluded cell does not count
    prob[0, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert losses.coarse_nll(prob, index, ok).item() == pytest.approx(0.0, abs=1e-6)


def test_coarse_targets_of_a_shift_by_one_cell():
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 4.0  # +4 px in x at stride 4: one cell to the right
    valid = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    index, ok = losses.coarse_targets(flow, valid, 4, (16, 16))
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    expected = (rows * 4 + cols + 1).flatten()
    assert ok[0].tolist() == (cols < 3).flatten().tolist()
    assert index[0][ok[0]].tolist() == expected[ok[0]].tolist()


def test_fine_regression_of_a_constant_error():
    truth = torch.zeros(1, 2, 5, 5)
    pred = truth.clone()
    pred[:, 0], pred[:, 1] = 3.0, 4.0  # end-point error 5 everywhere
    valid = torch.ones(1, 1, 5, 5)
    assert losses.fine_regression_loss(pred, truth, valid).item() == pytest.approx(5.0, rel=1e-5)
    assert losses.fine_regression_loss(pred, truth, valid, cap_px=2.0).item() == pytest.approx(2.0)


def test_cycle_error_of_inverse_translations_is_zero_and_of_equal_ones_is_double():
    forward = torch.zeros(1, 2, 12, 12)
    forward[:, 0], forward[:, 1] = 2.0, -1.0
    error, inside = losses.cycle_error(forward, -forward)
    assert error[inside].abs().max().item() < 1e-5 and inside.sum() == 10 * 11
    assert losses.cycle_loss(forward, forward).item() == pytest.approx(2 * math.sqrt(5), rel=1e-5)


def test_cycle_error_of_inverse_affine_flows_is_small():
    h = w = 32
    grid = losses.pixel_grid(1, h, w, torch.zeros(1))
    scale = 1.05
    forward = grid * (scale - 1)  # x -> 1.05 x
    backward = grid * (1 / scale - 1)  # y -> y / 1.05
    error, inside = losses.cycle_error(forward, backward)
    assert error[inside].max().item() < 1e-4  # bilinear sampling of a linear field is exact


def test_smoothness_of_linear_flow():
    grid = losses.pixel_grid(1, 6, 8, torch.zeros(1))
    flow = torch.stack([0.5 * grid[:, 0], torch.zeros_like(grid[:, 0])], 1)  # d flow_x / dx = 0.5
    # mean over both channels of dx^2: channel x has 0.25, channel y 0 -> 0.125; dy terms all 0
    assert losses.smoothness_loss(flow).item() == pytest.approx(0.5 * 0.125)


def test_confidence_bce_and_ece_hand_values():
    confidence = torch.tensor([0.9, 0.8, 0.3, 0.2]).reshape(1, 1, 2, 2)
    correct = torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(1, 1, 2, 2)
    valid = torch.ones(1, 1, 2, 2)
    expected = -(math.log(0.9) + math.log(0.2) + math.log(0.3) + math.log(0.8)) / 4
    assert losses.confidence_bce(confidence, correct, valid).item() == pytest.approx(expected, rel=1e-5)
    # 2 bins: [0, 0.5) holds 0.3, 0.2 (acc 0.5, conf 0.25); [0.5, 1] holds 0.9, 0.8 (acc 0.5, conf 0.85)
    ece = losses.expected_calibration_error(confidence, correct, n_bins=2)
    assert ece == pytest.approx(0.5 * 0.25 + 0.5 * 0.35, rel=1e-6)


def test_correct_matches_uses_end_point_error():
    truth = torch.zeros(1, 2, 1, 3)
    pred = torch.tensor([[[[0.5, 1.5, 3.0]], [[0.0, 0.0, 0.0]]]])
    assert losses.correct_matches(pred, truth, 1.0).flatten().tolist() == [1.0, 0.0, 0.0]


def test_dense_contrastive_is_low_for_matching_features_and_high_for_shuffled():
    torch.manual_seed(0)
    feature = torch.randn(1, 16, 16, 16)
    flow = torch.zeros(1, 2, 16, 16)
    valid = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    same = losses.dense_contrastive_loss(feature, feature, flow, valid, 1, gen, 64, 0.07, 1.5, 16)
    other = losses.dense_contrastive_loss(feature, torch.randn(1, 16, 16, 16), flow, valid, 1, gen, 64, 0.07)
    assert same.item() < 0.05 < other.item()


def test_local_window_nce_rewards_descriptors_that_peak_at_the_true_match():
    """Random unit descriptors, image 0 = image 1 shifted by (3, -2) px: with the true flow every
    anchor's window maximum is at its match (top-1 = 1, loss ~ 0); told a flow one pixel off, none is."""
    from vmgga.training.losses import local_window_nce

    torch.manual_seed(0)
    desc1 = torch.nn.functional.normalize(torch.randn(1, 32, 40, 40), dim=1)
    shift_x, shift_y = 3, -2
    desc0 = torch.roll(desc1, shifts=(-shift_y, -shift_x), dims=(2, 3))  # desc0(p) = desc1(p + shift)
    anchors = torch.zeros(1, 1, 40, 40, dtype=torch.bool)
    anchors[..., 8:30, 8:30] = True  # away from the wrap-around of roll and the window's reach
    truth = torch.zeros(1, 2, 40, 40)
    truth[:, 0], truth[:, 1] = shift_x, shift_y
    loss, top1 = local_window_nce(desc0, desc1, truth, anchors, torch.Generator().manual_seed(1), 64, 3, 0.05)
    assert float(top1) == 1.0 and float(loss) < 1e-3
    off = truth.clone()
    off[:, 0] += 1
    loss_off, top1_off = local_window_nce(
        desc0, desc1, off, anchors, torch.Generator().manual_seed(1), 64, 3, 0.05
    )
    assert float(top1_off) == 0.0 and float(loss_off) > 5.0
