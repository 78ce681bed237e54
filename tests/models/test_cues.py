import torch

from rvos.models.modules.cues import FeatureResizer, cue_sets


def test_cue_sets_take_the_mapped_words_then_the_sentence_and_pad():
    words = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)  # word k of sentence b has value 4b + k
    sentence = torch.tensor([[100.0], [200.0]])
    maps = torch.zeros(2, 40, dtype=torch.bool)
    maps[0, [1, 2]] = True  # sentence 0: two motion words; sentence 1: none
    maps[1, 39] = True  # beyond the sequence: ignored
    cues, padding = cue_sets(words, sentence, maps)
    assert cues[..., 0].tolist() == [[1.0, 2.0, 100.0], [200.0, 0.0, 0.0]]
    assert padding.tolist() == [[False, False, False], [False, True, True]]


def test_feature_resizer_normalises():
    resizer = FeatureResizer(6, 4).eval()
    out = resizer(torch.randn(3, 6))
    torch.testing.assert_close(out.mean(-1), torch.zeros(3), atol=1e-6, rtol=0)
    assert list(resizer.state_dict()) == ["fc.weight", "fc.bias", "layer_norm.weight", "layer_norm.bias"]
