import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rvos.data.expressions import contrastive_index
from rvos.data.schema import Expression, Video
from rvos.models.criterion.contrastive import MemoryBank, multi_positive_loss

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dshmp_contrastive_official.json"


def test_multi_positive_loss_matches_the_official_function():
    for case in json.loads(FIXTURE.read_text())["cases"]:
        loss = multi_positive_loss(torch.tensor(case["logits"], dtype=torch.float64),
                                   torch.tensor(case["cosine"], dtype=torch.float64), torch.tensor(case["labels"]))
        assert loss.item() == pytest.approx(case["loss"], rel=1e-12)


def test_update_keeps_a_tenth_of_the_old_entry():
    bank = MemoryBank(4, 2)
    old = bank.features.clone()
    bank.update(torch.tensor([2]), torch.ones(1, 2, requires_grad=True))
    torch.testing.assert_close(bank.features[2], 0.1 * old[2] + 0.9)
    torch.testing.assert_close(bank.features[[0, 1, 3]], old[[0, 1, 3]])
    assert not bank.features.requires_grad
    assert "features" in bank.state_dict()


def test_negatives_are_distractors_first_then_drawn_from_the_rest():
    bank = MemoryBank(20, 2, samples=6)
    rng = np.random.default_rng(0)
    assert bank.negatives([0, 1], [2, 3, 4, 5, 6], rng) == [2, 3, 4, 5]  # enough distractors: cut to 6 - 2
    drawn = bank.negatives([0, 1], [2], rng)
    assert len(drawn) == 4 and drawn[-1] == 2 and not set(drawn[:-1]) & {0, 1, 2}
    assert len(set(drawn)) == 4
    with pytest.raises(ValueError, match="lower the number of contrastive samples"):
        MemoryBank(5, 2, samples=10).negatives([0], [1], rng)


def test_loss_contrasts_the_anchor_with_the_updated_bank():
    torch.manual_seed(0)
    bank = MemoryBank(10, 4, samples=5)
    anchor = torch.randn(4, requires_grad=True)
    old = bank.features[3].clone()
    loss = bank.loss(anchor, 3, [3, 7], [1, 2, 5, 8], np.random.default_rng(0))
    torch.testing.assert_close(bank.features[3], 0.1 * old + 0.9 * anchor.detach())  # updated before the contrast
    rows = bank.features[[3, 7, 1, 2, 5]]  # positives, then the distractors cut to 5 - 2
    labels = torch.tensor([[1, 1, 0, 0, 0]])
    expected = multi_positive_loss(anchor[None] @ rows.T, torch.nn.functional.cosine_similarity(
        anchor[None], rows, dim=1)[None], labels)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert anchor.grad is not None and anchor.grad.abs().sum() > 0


def test_index_groups_expressions_by_video_and_target():
    split = SimpleNamespace(videos={
        "a": Video("a", ("0",), {"0": Expression("0", "x", ("1",)), "1": Expression("1", "y", ("2",)),
                                 "2": Expression("2", "z", ("1",)), "3": Expression("3", "w", ("1", "2"))}),
        "b": Video("b", ("0",), {"0": Expression("0", "x", ("1",)), "1": Expression("1", "y", ("1",))}),
    })
    index = contrastive_index(split)
    assert len(index) == 6
    assert index.of("a", "0") == (0, (0, 2), (1, 3))
    assert index.of("a", "3") == (3, (3,), (0, 1, 2))
    assert index.of("b", "1") == (5, (4, 5), ())  # same object id in another video: not a positive of video a's
