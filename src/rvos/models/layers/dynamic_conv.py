"""Conditional (dynamic) convolution, CondInst-style, as ReferFormer, SgMg and MUTR segment: each query's
controller emits the weights of a small stack of 1x1 convolutions, applied to the shared mask features with the
pixels' coordinates relative to the query's reference point appended.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.layers.attention import MLP


def dynamic_param_sizes(in_channels: int, channels: int, layers: int, rel_coord: bool = True,
                        out_channels: int | None = None):
    """The (weight sizes, bias sizes) of a stack of ``layers`` 1x1 convolutions: ``in_channels`` (+ 2 coordinates)
    -> ``channels`` -> ... -> ``out_channels`` (default ``channels``)."""
    outs = [channels] * (layers - 1) + [out_channels or channels]
    ins = [in_channels + 2 if rel_coord else in_channels] + [channels] * (layers - 1)
    return [i * o for i, o in zip(ins, outs)], outs


def locations(height: int, width: int, stride: int, device=None) -> torch.Tensor:
    """(H * W, 2) the (x, y) image coordinates of the centres of a stride-``stride`` grid's cells."""
    y, x = torch.meshgrid(torch.arange(0, height * stride, stride, dtype=torch.float32, device=device),
                          torch.arange(0, width * stride, stride, dtype=torch.float32, device=device), indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], 1) + stride // 2


class DynamicMaskHead(nn.Module):
    """A controller MLP (query -> parameters) and the convolutions it parameterises (ReLU between them).

    forward: mask features (N, C, h, w) at ``stride`` of the image, per map the queries (N, Q, D) and their
    reference points (N, Q, 2) in pixels of the image -> per query the output channels (N, Q, out_channels, h, w):
    SgMg's 16 channels (pixel-shuffled later), or ReferFormer's and MUTR's one mask logit."""

    def __init__(self, query_dim: int, in_channels: int, channels: int = 16, layers: int = 2, stride: int = 8,
                 rel_coord: bool = True, controller_layers: int = 3, out_channels: int | None = None):
        super().__init__()
        self.stride, self.rel_coord = stride, rel_coord
        self.out_channels = out_channels or channels
        self.weight_sizes, self.bias_sizes = dynamic_param_sizes(in_channels, channels, layers, rel_coord,
                                                                 out_channels)
        self.controller = MLP(query_dim, query_dim, sum(self.weight_sizes) + sum(self.bias_sizes), controller_layers)
        for layer in self.controller.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor, queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        n, c, h, w = features.shape
        q = queries.shape[1]
        x = features[:, None].expand(n, q, c, h, w)
        if self.rel_coord:
            rel = points[:, :, None, :] - locations(h, w, self.stride, features.device)[None, None]  # (N, Q, hw, 2)
            x = torch.cat([x, rel.permute(0, 1, 3, 2).reshape(n, q, 2, h, w)], 2)
        params = self.controller(queries).flatten(0, 1)  # (N*Q, P)
        chunks = params.split(self.weight_sizes + self.bias_sizes, dim=1)
        weights, biases = chunks[: len(self.weight_sizes)], chunks[len(self.weight_sizes):]
        x = x.reshape(1, -1, h, w)
        groups = n * q
        for i, (weight, bias, out) in enumerate(zip(weights, biases, self.bias_sizes)):
            x = F.conv2d(x, weight.reshape(groups * out, -1, 1, 1), bias.reshape(-1), groups=groups)
            if i < len(weights) - 1:
                x = F.relu(x)
        return x.view(n, q, self.out_channels, h, w)

