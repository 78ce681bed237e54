"""Hierarchical Motion Perception against the official DsHmp code.

``fixtures/dshmp_hmp_official.safetensors`` holds numbers only: the random weights of a reduced official window
encoder (dim 16, 2 heads, FFN 32, 2 layers, window 8), its input (11 frames x 3 queries, 5 motion cues) and its
outputs in training (plain windows) and at inference (odd layers on shifted windows), computed by running the
official ``dshmp_decoder.py`` outside this project."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rvos.models.modules.motion_perception import (HierarchicalCrossAttention, HierarchicalMotionPerception,
                                                   pairwise_mean, track_order)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dshmp_hmp_official.safetensors"


def official_to_rvos(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        key = key.replace("enc_self_attn.", "self_attn.").replace(".self_attn.", ".attn.")
        key = key.replace("hierarchical_cross.", "cross.").replace("enc_ffn.", "ffn.")
        out[key] = value
    return out


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_matches_the_official_window_encoder(mode):
    tensors = load_file(FIXTURE)
    state = {k: v for k, v in tensors.items() if not k.startswith(("input.", "output."))}
    hmp = HierarchicalMotionPerception(dim=16, layers=2, heads=2, ffn=32, window=8)
    hmp.load_state_dict(official_to_rvos(state), strict=True)
    hmp.train(mode == "train")
    queries = tensors["input.frame_queries"][:, :, 0][None]  # official (T, fQ, 1, C) -> (1, T, Q, C)
    with torch.no_grad():
        out = hmp(queries, tensors["input.cues"][None])
    expected = tensors[f"output.{mode}"][:, :, 0][None]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_clips_of_a_batch_are_independent_and_padded_cues_are_ignored():
    torch.manual_seed(0)
    hmp = HierarchicalMotionPerception(dim=16, layers=2, heads=2, ffn=32, window=4).eval()
    queries, cues = torch.randn(2, 7, 3, 16), torch.randn(2, 5, 16)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    with torch.no_grad():
        both = hmp(queries, cues, padding)
        first = hmp(queries[:1], cues[:1])
        second = hmp(queries[1:], cues[1:, :3])
    torch.testing.assert_close(both, torch.cat([first, second]), atol=1e-6, rtol=1e-5)


def test_pairwise_mean_repeats_the_last_token_of_an_odd_length():
    x = torch.tensor([[[1.0], [3.0], [5.0]]])
    assert pairwise_mean(x).flatten().tolist() == [2.0, 5.0]
    assert pairwise_mean(pairwise_mean(pairwise_mean(torch.arange(8.0).view(1, 8, 1)))).item() == 3.5


def test_track_order_is_the_official_one():
    """Frame t is put in the order ``current[indices]``, indices[i] being the previous slot matched to query i: the
    inverse of the matching. A swap (its own inverse) is followed; a 3-cycle comes out rotated the other way."""
    a, b, c = torch.eye(3)
    swap = torch.stack([torch.stack([a, b, c]), torch.stack([b, a, c])])[None]
    order = track_order(swap)
    assert torch.equal(swap.gather(2, order[..., None].expand_as(swap))[0, 1], torch.stack([a, b, c]))
    cycle = torch.stack([torch.stack([a, b, c]), torch.stack([b, c, a]), torch.stack([c, a, b])])[None]
    tracks = cycle.gather(2, track_order(cycle)[..., None].expand_as(cycle))[0]
    assert torch.equal(tracks[0], torch.stack([a, b, c]))
    assert torch.equal(tracks[1], torch.stack([c, a, b]))  # matched: b->1, c->2, a->0; taken: current[[1, 2, 0]]
    assert torch.equal(tracks[2], torch.stack([c, a, b]))  # matched to frame 1's order exactly


def test_a_window_longer_than_the_stages_can_merge_is_refused():
    layer = HierarchicalCrossAttention(8, stages=3)
    with pytest.raises(ValueError, match="one token in 3 stages"):
        layer(torch.randn(1, 9, 2, 8), torch.randn(1, 4, 8))
