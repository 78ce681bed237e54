"""A tiny RoBERTa-shaped text encoder saved in the layout transformers reads (``save_pretrained``), with a
byte-level BPE tokenizer trained here on a few sentences: the stand-in for a downloaded ``roberta-base``."""

from pathlib import Path

SENTENCES = ["the red square moving to the left", "a blue circle that stops", "the two triangles jumping",
             "the giraffe that turns around and walks away", "a small green object moving fast"]


def write_tiny_roberta(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(SENTENCES * 4, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                     cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    tokenizer.save_pretrained(folder)
    config = RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(seed)
    RobertaModel(config).save_pretrained(folder)
    return folder
