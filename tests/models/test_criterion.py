"""Matching and losses: pluggable terms, instance targets, box terms."""

import pytest
import torch
import torch.nn.functional as F

from rvos.models.criterion.losses import LossConfig, SetCriterion
from rvos.models.criterion.terms import boxes_from_masks, dice_cost, dice_loss, giou_loss


def two_objects(h=16, w=16):
    targets = torch.zeros(2, 1, h, w, dtype=torch.bool)
    targets[0, 0, 2:6, 2:6] = True
    targets[1, 0, 8:14, 9:15] = True
    return targets


def predictions(targets, q=4):
    """Query 1 segments object 0, query 3 segments object 1, the others nothing."""
    masks = torch.full((1, q, 1, *targets.shape[-2:]), -6.0)
    masks[0, 1][targets[0]] = 6.0
    masks[0, 3][targets[1]] = 6.0
    return torch.zeros(1, q), masks


def test_an_unreferred_instance_is_matched_for_its_mask_and_scored_negative():
    targets = two_objects()
    scores, masks = predictions(targets)
    crit = SetCriterion(LossConfig(num_points=1024))
    _, matches = crit(scores, masks, [targets], labels=[torch.tensor([True, False])])
    q, n = matches[0]
    assert dict(zip(n.tolist(), q.tolist())) == {0: 1, 1: 3}
    # the score loss pushes query 1 up and query 3 (matched, unreferred) down with full weight
    scores = scores.clone().requires_grad_(True)
    losses, _ = crit(scores, masks, [targets], labels=[torch.tensor([True, False])])
    losses["score"].backward()
    assert scores.grad[0, 1] < 0 < scores.grad[0, 3]
    assert scores.grad[0, 3] > 5 * scores.grad[0, 0]  # unmatched queries weigh no_object_weight


def test_without_labels_every_target_is_referred():
    targets = two_objects()
    scores, masks = predictions(targets)
    scores = scores.requires_grad_(True)
    losses, _ = SetCriterion(LossConfig(num_points=1024))(scores, masks, [targets])
    losses["score"].backward()
    assert scores.grad[0, 1] < 0 and scores.grad[0, 3] < 0
    assert losses["dice"] < 0.1 and losses["mask"] < 0.1  # weighted 5: near-perfect masks


def test_focal_and_box_terms_match_and_fall_to_zero_on_a_perfect_prediction():
    targets = two_objects()
    scores, masks = predictions(targets)
    scores[0] = torch.tensor([-8.0, 8.0, -8.0, 8.0])
    boxes = torch.zeros(1, 4, 1, 4)
    boxes[0, 1] = boxes_from_masks(targets[0])
    boxes[0, 3] = boxes_from_masks(targets[1])
    cfg = LossConfig(score_loss="focal", mask_loss="focal", box_weight=5, giou_weight=2, num_points=1024)
    losses, matches = SetCriterion(cfg)(scores, masks, [targets], boxes=boxes)
    assert dict(zip(matches[0][1].tolist(), matches[0][0].tolist())) == {0: 1, 1: 3}
    assert losses["box"] < 1e-6 and losses["giou"] < 1e-6 and losses["score"] < 0.01


def test_boxes_decide_which_of_two_identical_objects_a_query_covering_both_is_matched_to():
    targets = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    targets[0, 0, 2:6, 2:6] = True
    targets[1, 0, 2:6, 10:14] = True  # the same square, 8 pixels right
    masks = torch.full((1, 2, 1, 16, 16), -6.0)
    masks[0, :, 0][:, targets.any(0)[0]] = 6.0  # both queries cover both squares
    boxes = torch.stack([boxes_from_masks(targets[1]), boxes_from_masks(targets[0])])[None]  # query 0 boxes the right
    cfg = LossConfig(box_weight=5, giou_weight=2, num_points=1024)
    _, matches = SetCriterion(cfg)(torch.zeros(1, 2), masks, [targets], boxes=boxes)
    assert dict(zip(matches[0][0].tolist(), matches[0][1].tolist())) == {0: 1, 1: 0}
    _, swapped = SetCriterion(cfg)(torch.zeros(1, 2), masks, [targets], boxes=boxes.flip(1))
    assert dict(zip(swapped[0][0].tolist(), swapped[0][1].tolist())) == {0: 0, 1: 1}


def test_boxes_from_masks_are_normalised_centre_size_and_giou_of_a_box_with_itself_is_perfect():
    mask = torch.zeros(10, 20, dtype=torch.bool)
    mask[2:6, 4:14] = True
    box = boxes_from_masks(mask)
    assert box.tolist() == pytest.approx([9 / 20, 4 / 10, 10 / 20, 4 / 10])
    assert boxes_from_masks(torch.zeros(3, 10, 20, dtype=torch.bool)).abs().sum() == 0
    assert giou_loss(box[None], box[None]).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_cost_is_the_dice_loss_of_every_pair():
    logits, labels = torch.randn(3, 50), (torch.rand(2, 50) > 0.5).float()
    cost = dice_cost(logits, labels)
    for i in range(3):
        for j in range(2):
            assert cost[i, j] == pytest.approx(dice_loss(logits[i:i + 1], labels[j:j + 1]).item(), abs=1e-6)


def test_an_unknown_loss_kind_is_a_config_error():
    from rvos.config import load_config
    from rvos.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.score_loss"):
        load_config("vlm_tiny_synth", ["model.loss.score_loss=hinge"])



def test_masks_are_read_at_the_targets_resolution():
    """A coarse prediction is compared with the target where the target is exact: at every target pixel (when there
    are at most num_points), the prediction read bilinearly there; never the target squeezed onto the prediction's
    grid, which leaves a 12-pixel square 3 blurred cells at stride 4."""
    torch.manual_seed(0)
    target = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    target[0, 0, 5:17, 9:21] = True  # a 12-pixel square off the stride-4 grid
    logits = torch.randn(1, 1, 1, 8, 8)
    losses, _ = SetCriterion(LossConfig(num_points=1024, mask_weight=1.0, dice_weight=1.0))(
        torch.zeros(1, 1), logits, [target])
    up = F.interpolate(logits[0], size=(32, 32), mode="bilinear", align_corners=False).flatten()
    exact = F.binary_cross_entropy_with_logits(up, target.float().flatten())
    assert losses["mask"] == pytest.approx(exact.item(), rel=1e-5)
    assert losses["dice"] == pytest.approx(dice_loss(up[None], target.float().flatten()[None]).item(), rel=1e-5)
