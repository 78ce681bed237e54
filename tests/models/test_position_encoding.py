"""Sine position encodings: Deformable DETR's (valid pixels counted, minus a half, over the valid length) and the
text one ReferFormer-style models use."""

import math

import torch

from rvos.models.layers.position_encoding import sine_2d_masked, sine_text


def test_masked_sine_counts_valid_pixels_and_ignores_padding():
    padding = torch.zeros(2, 4, 6, dtype=torch.bool)
    padding[1, 3:, :] = True  # clip 1: 3 valid rows, 4 valid columns
    padding[1, :, 4:] = True
    pos = sine_2d_masked(padding, 8)
    assert pos.shape == (2, 16, 4, 6)
    # channel 0 is sin of the normalised y, channel 8 sin of the normalised x (lowest frequency)
    y = (torch.arange(1, 5) - 0.5) / (4 + 1e-6) * 2 * math.pi
    torch.testing.assert_close(pos[0, 0, :, 0], y.sin())
    x = (torch.arange(1, 5) - 0.5) / (4 + 1e-6) * 2 * math.pi
    torch.testing.assert_close(pos[1, 8, 0, :4], x.sin())
    torch.testing.assert_close(pos[1, :, :3, :4], sine_2d_masked(torch.zeros(1, 3, 4, dtype=torch.bool), 8)[0])


def test_text_positions_spread_the_real_tokens_over_one_period():
    padding = torch.tensor([[False, False, False, True]])
    pos = sine_text(padding, 4)
    assert pos.shape == (1, 4, 4)
    count = torch.tensor([1.0, 2.0, 3.0, 3.0]) / (3 + 1e-6) * 2 * math.pi
    torch.testing.assert_close(pos[0, :, 0], count.sin())
    torch.testing.assert_close(pos[0, :, 1], count.cos())
    torch.testing.assert_close(pos[0, 3], pos[0, 2])  # padding repeats the last real token's position
