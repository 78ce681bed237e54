"""``rvos-tiny-roberta``: a RoBERTa-shaped text encoder small enough to train from scratch on a CPU, bundled with
rvos (``rvos/configs/hf/rvos-tiny-roberta``) so that the ``*_tiny_synth`` configs of RoBERTa methods run offline.

The folder is in the layout transformers reads (``save_pretrained``): a byte-level BPE tokenizer with RoBERTa's
special tokens and post-processing (so character offsets, which DsHmp's decoupling needs, work as with
``roberta-base``), trained on the sentences of the synthetic benchmark and the decoupling lexicon's motion words,
and a ``RobertaConfig`` of 2 layers of width 64. It holds no weights: configs build it with ``pretrained: false``.
Any sentence can be tokenized (bytes are the fallback); the benchmark's words are single tokens.

``python -m rvos.text.tiny_roberta DIR`` writes the folder; the bundled one is its output.
"""

from __future__ import annotations

import sys
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "configs" / "hf" / "rvos-tiny-roberta"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def corpus(videos: int = 200) -> list[str]:
    """The expressions of ``videos`` small synthetic videos, then every motion word of the decoupling lexicon."""
    from rvos.data.synth.generate import SynthSpec, make_video
    from rvos.text.decouple import MOTION_ADVERBS, MOTION_VERBS, NOUN_VERBS

    spec = SynthSpec(train=videos, frames=12, height=48, width=64)
    sentences = [e.text for i in range(videos) for e in make_video(spec, "train", i)[3]]
    return sentences + sorted(MOTION_VERBS | MOTION_ADVERBS | NOUN_VERBS)


def write_tiny_roberta(folder: str | Path, vocab_size: int = 800, hidden: int = 64, layers: int = 2,
                       heads: int = 4, max_positions: int = 64) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import RobertaConfig, RobertaTokenizerFast

    folder = Path(folder)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                     cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                     model_max_length=max_positions - 2)
    tokenizer.save_pretrained(folder)
    RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                  num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=max_positions,
                  pad_token_id=1, bos_token_id=0, eos_token_id=2).save_pretrained(folder)
    return folder


if __name__ == "__main__":
    print(write_tiny_roberta(sys.argv[1] if len(sys.argv) > 1 else BUNDLED))
