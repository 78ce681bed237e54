"""The bi-directional image-text attention block against the official one (DsHmp's fuse_modules.py): numbers in
``fixtures/dshmp_biattention_official.safetensors`` (random weights, layer scales included, masked tokens on both
sides), made by tests/fixtures/make_dshmp_biattention.py."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from rvos.models.layers.bi_attention import BiAttentionBlock

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dshmp_biattention_official.safetensors"


def test_matches_the_official_block():
    t = load_file(FIXTURE)
    block = BiAttentionBlock(16, 16, 24, 3, dropout=0.1, drop_path=0.1).eval()
    block.load_state_dict({k: v for k, v in t.items() if not k.startswith(("input.", "output."))}, strict=True)
    with torch.no_grad():
        v, l = block(t["input.v"].transpose(0, 1), t["input.l"].transpose(0, 1), t["input.v_mask"].bool(),
                     t["input.l_mask"].bool())
    torch.testing.assert_close(v, t["output.v"].transpose(0, 1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(l, t["output.l"].transpose(0, 1), atol=1e-6, rtol=1e-5)


def test_padded_tokens_change_nothing_for_the_others():
    torch.manual_seed(0)
    block = BiAttentionBlock(8, 8, 8, 2, dropout=0.0).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_()
    v, l = torch.randn(1, 5, 8), torch.randn(1, 3, 8)
    extra_v, extra_l = torch.cat([v, torch.randn(1, 2, 8)], 1), torch.cat([l, torch.randn(1, 1, 8)], 1)
    with torch.no_grad():
        ref_v, ref_l = block(v, l)
        out_v, out_l = block(extra_v, extra_l, torch.tensor([[False] * 5 + [True] * 2]), torch.tensor([[False] * 3 + [True]]))
    torch.testing.assert_close(out_v[:, :5], ref_v, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out_l[:, :3], ref_l, atol=1e-6, rtol=1e-5)
