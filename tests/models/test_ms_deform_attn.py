"""Deformable attention against a naive loop over queries, heads, levels and points."""

import math

import torch

from rvos.models.layers.ms_deform_attn import MSDeformAttn, ms_deform_attn


def bilinear(value_map: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """value_map (D, H, W); (x, y) normalised in [0, 1]; zero outside, pixel centres at (i + 0.5) / size."""
    d, h, w = value_map.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d, dtype=value_map.dtype)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * value_map[:, yy, xx]
    return out


def naive(value, shapes, locations, weights):
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(n, lq, m * d, dtype=value.dtype)
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                acc = torch.zeros(d, dtype=value.dtype)
                for level, (h, w) in enumerate(shapes):
                    vmap = value[b, starts[level]:starts[level + 1], head].T.reshape(d, h, w)
                    for p in range(n_points):
                        x, y = locations[b, q, head, level, p].tolist()
                        acc += weights[b, q, head, level, p] * bilinear(vmap, x, y)
                out[b, q, head * d:(head + 1) * d] = acc
    return out


def test_core_matches_the_naive_loop():
    torch.manual_seed(0)
    shapes = [(3, 5), (2, 3), (1, 2)]
    n, lq, m, d, p = 2, 4, 2, 3, 3
    value = torch.randn(n, sum(h * w for h, w in shapes), m, d, dtype=torch.float64)
    locations = torch.rand(n, lq, m, len(shapes), p, 2, dtype=torch.float64) * 1.4 - 0.2  # some outside
    weights = torch.rand(n, lq, m, len(shapes) * p, dtype=torch.float64).softmax(-1).view(n, lq, m, len(shapes), p)
    fast = ms_deform_attn(value, shapes, locations, weights)
    torch.testing.assert_close(fast, naive(value, shapes, locations, weights), rtol=1e-10, atol=1e-10)


def test_module_initialisation_and_gradients():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=2)
    # head 0 samples to the right, head 1 down, head 2 left (a ring of directions); point i is i+1 pixels out
    bias = attn.sampling_offsets.bias.view(4, 2, 2, 2)
    torch.testing.assert_close(bias[0, 0, 0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(bias[1, 0, 1], torch.tensor([0.0, 2.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[2, 1, 0], torch.tensor([-1.0, 0.0]), atol=1e-6, rtol=0)
    shapes = [(4, 6), (2, 3)]
    value = torch.randn(2, 30, 16, requires_grad=True)
    query = torch.randn(2, 30, 16, requires_grad=True)
    refs = torch.rand(2, 30, 2, 2)
    out = attn(query, refs, value, shapes)
    assert out.shape == (2, 30, 16)
    out.square().sum().backward()
    # gradients reach the values and, through the bilinear sampling, the offsets and weights the query predicts
    assert value.grad.abs().sum() > 0
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0
    assert attn.attention_weights.weight.grad.abs().sum() > 0


def test_box_references_spread_the_points_over_the_box_and_padding_reads_as_zero():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2)
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    shapes = [(4, 6), (2, 3)]
    value, query = torch.randn(1, 30, 8), torch.randn(1, 5, 8)
    boxes = torch.rand(1, 5, 2, 4) * 0.5 + 0.2
    # a box reference is a point reference whose offsets are scaled by half the box per point, not by the level
    offsets = attn.sampling_offsets(query).view(1, 5, 2, 2, 2, 2)
    weights = attn.attention_weights(query).view(1, 5, 2, 4).softmax(-1).view(1, 5, 2, 2, 2)
    locations = boxes[:, :, None, :, None, :2] + offsets / 2 * boxes[:, :, None, :, None, 2:] * 0.5
    v = attn.value_proj(value).view(1, 30, 2, 4)
    expected = attn.output_proj(ms_deform_attn(v, shapes, locations, weights))
    torch.testing.assert_close(attn(query, boxes, value, shapes), expected)
    padding = torch.zeros(1, 30, dtype=torch.bool)
    padding[0, 20:] = True  # the last row of level 0 and all of level 1
    masked = value.clone()
    v = attn.value_proj(value).masked_fill(padding[..., None], 0.0).view(1, 30, 2, 4)
    expected = attn.output_proj(ms_deform_attn(v, shapes, locations, weights))
    torch.testing.assert_close(attn(query, boxes, masked, shapes, padding), expected)
