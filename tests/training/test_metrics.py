"""LVE / EVE / MVE and the vertex losses on hand-made cases."""

from __future__ import annotations

import pytest
import torch

from emotalk3d.training.losses import region_weights, velocity_loss, vertex_loss
from emotalk3d.training.metrics import (
    emotional_vertex_error,
    lip_vertex_error,
    mean_vertex_error,
    region_max_error_per_frame,
)


def hand_made():
    """B=1, T=2, P=4; errors: frame 0 moves point 0 by 3 mm (x) and point 2 by 4 mm (y);
    frame 1 moves point 1 by (3, 4, 0) = 5 mm and point 3 by 1 mm."""
    target = torch.zeros(1, 2, 4, 3)
    pred = target.clone()
    pred[0, 0, 0, 0] = 3.0
    pred[0, 0, 2, 1] = 4.0
    pred[0, 1, 1, :2] = torch.tensor([3.0, 4.0])
    pred[0, 1, 3, 2] = -1.0
    lips = torch.tensor([True, True, False, False])
    eyes = torch.tensor([False, False, True, True])
    return pred, target, lips, eyes


def test_lve_eve_mve_hand_made():
    pred, target, lips, eyes = hand_made()
    # lips: frame 0 max = 3, frame 1 max = 5 -> 4
    assert lip_vertex_error(pred, target, lips).item() == pytest.approx(4.0)
    # eyes: frame 0 max = 4, frame 1 max = 1 -> 2.5
    assert emotional_vertex_error(pred, target, eyes).item() == pytest.approx(2.5)
    # mean: frame 0 (3 + 4) / 4, frame 1 (5 + 1) / 4 -> 13 / 8
    assert mean_vertex_error(pred, target).item() == pytest.approx(13 / 8)
    # batched masks [B, P] give the same
    assert lip_vertex_error(pred, target, lips[None]).item() == pytest.approx(4.0)


def test_frame_mask_ignores_padding():
    pred, target, lips, eyes = hand_made()
    pad_pred = torch.cat([pred, torch.full((1, 3, 4, 3), 100.0)], dim=1)
    pad_target = torch.cat([target, torch.zeros(1, 3, 4, 3)], dim=1)
    mask = torch.tensor([[True, True, False, False, False]])
    assert lip_vertex_error(pad_pred, pad_target, lips, mask).item() == pytest.approx(4.0)
    assert emotional_vertex_error(pad_pred, pad_target, eyes, mask).item() == pytest.approx(2.5)
    assert mean_vertex_error(pad_pred, pad_target, mask).item() == pytest.approx(13 / 8)
    # only frame 1 valid
    mask1 = torch.tensor([[False, True]])
    assert lip_vertex_error(pred, target, lips, mask1).item() == pytest.approx(5.0)


def test_region_max_is_max_not_mean():
    pred, target, lips, _ = hand_made()
    per_frame = region_max_error_per_frame(pred, target, torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(per_frame, torch.tensor([[4.0, 5.0]]))


def test_metric_validation():
    pred, target, lips, _ = hand_made()
    with pytest.raises(ValueError, match=r"\[B, T, P, 3\]"):
        lip_vertex_error(pred[0], target[0], lips)
    with pytest.raises(ValueError, match="no point"):
        lip_vertex_error(pred, target, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="P = 4"):
        lip_vertex_error(pred, target, torch.ones(3, dtype=torch.bool))


def test_vertex_loss_weights_and_kinds():
    pred, target, lips, _ = hand_made()
    # unweighted MSE: squared distances frame 0 (9 + 16)/4, frame 1 (25 + 1)/4 -> 51 / 8
    assert vertex_loss(pred, target).item() == pytest.approx(51 / 8)
    w = region_weights(4, lips, 3.0)
    torch.testing.assert_close(w, torch.tensor([3.0, 3.0, 1.0, 1.0]))
    # weighted: frame 0 (3*9 + 16)/8, frame 1 (3*25 + 1)/8 -> (43 + 76) / 16
    assert vertex_loss(pred, target, w).item() == pytest.approx(119 / 16)
    # huber with delta 1 per coordinate: |3| -> 2.5, |4| -> 3.5, (3,4) -> 2.5 + 3.5, |1| -> 0.5
    expected = ((2.5 + 3.5) / 4 + (6.0 + 0.5) / 4) / 2
    assert vertex_loss(pred, target, kind="huber").item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="mse"):
        vertex_loss(pred, target, kind="l3")
    mask = torch.tensor([[True, False]])
    assert vertex_loss(pred, target, frame_mask=mask).item() == pytest.approx(25 / 4)


def test_velocity_loss():
    target = torch.zeros(1, 3, 2, 3)
    pred = torch.zeros(1, 3, 2, 3)
    pred[0, :, 0, 0] = 7.0  # a constant offset has no velocity error
    assert velocity_loss(pred, target).item() == 0.0
    assert vertex_loss(pred, target).item() > 0
    pred[0, 2, 1, 0] = 2.0  # a jump in the last frame: one pair with error 4 on one of 2 points
    assert velocity_loss(pred, target).item() == pytest.approx((0 + 4 / 2) / 2)
    # masking the last frame removes the only moving pair
    mask = torch.tensor([[True, True, False]])
    assert velocity_loss(pred, target, frame_mask=mask).item() == 0.0
    # gradients flow
    p = pred.clone().requires_grad_()
    velocity_loss(p, target).backward()
    assert p.grad.abs().sum() > 0
