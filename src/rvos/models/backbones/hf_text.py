"""Text encoders from transformers (RoBERTa and other encoders) through ``AutoTokenizer`` / ``AutoModel``.

``model`` names where the tokenizer and the architecture come from: a local folder (``save_pretrained``'s
layout), a folder bundled with rvos (``rvos-tiny-roberta``, see :mod:`rvos.text.tiny_roberta`), or a Hugging Face
repo id read from the cache (downloaded into it when online). ``pretrained: false``
builds the architecture with random weights (a text encoder trained from scratch, or before loading a checkpoint
that holds every weight). Word features are the last hidden states; the sentence feature is the pooled output
(the first token through the pooler, as ReferFormer reads RoBERTa), or the first token's state for a model
without a pooler.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from rvos.errors import CheckpointError
from rvos.models.backbones.base import TextEncoder, TextFeatures, TokenRows, offline
from rvos.models.meta.base import TextInputs

BUNDLED = Path(__file__).resolve().parents[2] / "configs" / "hf"  # text encoders shipped with rvos


class HFTextEncoder(TextEncoder):
    def __init__(self, model: str = "roberta-base", pretrained: bool = True, frozen: bool = True,
                 max_length: int = 40, cache_dir: str | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        local = Path(model).expanduser()
        if not local.is_dir() and (BUNDLED / model).is_dir():
            local = BUNDLED / model
        source = str(local) if local.is_dir() else model
        opts = {"cache_dir": cache_dir, "local_files_only": local.is_dir() or offline()}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **opts)
            config = AutoConfig.from_pretrained(source, **opts)
            if pretrained:
                logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)
                self.model = AutoModel.from_pretrained(source, **opts)
            else:
                self.model = AutoModel.from_config(config)
        except OSError as exc:
            reason = " ".join(str(exc).split())[:300]
            raise CheckpointError(
                f"text encoder {model!r} could not be loaded ({reason}). Download it (e.g. `hf download {model} "
                "--local-dir DIR`) and set the text encoder's model to that folder") from None
        self.max_length = max_length
        self._token_rows = TokenRows()
        self.width = config.hidden_size
        self.sentence_dim = config.hidden_size
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def tokenize(self, sentences: list[str]) -> TextInputs:
        """Token ids and attention mask (N, L), padded to the longest sentence as the tokenizer pads (its side, its
        pad id). Each sentence is tokenized once and its ids kept (up to ``TOKEN_CACHE`` sentences): the track head
        reads the sentences of a few hundred videos every training step."""
        if not sentences:
            return TextInputs(input_ids=torch.zeros(0, 0, dtype=torch.int64),
                              attention_mask=torch.zeros(0, 0, dtype=torch.int64))
        rows = self._token_rows.rows(sentences, self._token_ids)
        left = self.tokenizer.padding_side == "left"

        def padded(values: list[torch.Tensor], fill: int) -> torch.Tensor:
            """pad_sequence pads on the right (its padding_side needs torch 2.6): a left side flips before and after"""
            if left:
                return pad_sequence([v.flip(0) for v in values], batch_first=True, padding_value=fill).flip(1)
            return pad_sequence(values, batch_first=True, padding_value=fill)

        input_ids = padded(rows, self.tokenizer.pad_token_id)
        attention_mask = padded([torch.ones_like(r) for r in rows], 0)
        return TextInputs(input_ids=input_ids, attention_mask=attention_mask)

    def _token_ids(self, sentences: list[str]) -> list[torch.Tensor]:
        """Each sentence's ids, truncated as the encoder reads them, unpadded."""
        ids = self.tokenizer(sentences, truncation=True, max_length=self.max_length)["input_ids"]
        return [torch.tensor(row, dtype=torch.int64) for row in ids]

    def forward_text(self, inputs: TextInputs) -> TextFeatures:
        out = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        pooled = getattr(out, "pooler_output", None)
        sentence = pooled if pooled is not None else out.last_hidden_state[:, 0]
        return TextFeatures(out.last_hidden_state, inputs["attention_mask"] == 0, sentence)

    def bag_of_tokens(self, inputs: TextInputs) -> torch.Tensor:
        """(N, width): the mean of each sentence's token embeddings, its words alone (no special or padding token),
        in no order: a sentence feature that needs no training of the text transformer (track grounding's)."""
        ids = inputs["input_ids"]
        words = inputs["attention_mask"].bool() & ~torch.isin(ids, torch.tensor(self.tokenizer.all_special_ids,
                                                                                  device=ids.device))
        embeds = self.model.get_input_embeddings()(ids) * words[..., None]
        return embeds.sum(1) / words.sum(1, keepdim=True).clamp(min=1)
