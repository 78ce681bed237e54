"""OpenCLIP as the image and the text backbone.

Image side: the multi-scale features of the CLIP image tower (ConvNeXt stages, or the stages of the ResNet
``ModifiedResNet``) at strides 4, 8, 16, 32, as FC-CLIP takes them, after CLIP's pixel normalisation. Text side:
the CLIP text transformer's per-token features (after ``ln_final``) and the sentence feature (the end-of-text
token through the text projection), as ``encode_text`` computes it.

Weights (see :func:`resolve_weights`) come from a local file, a local folder in the Hugging Face layout, or the
Hugging Face cache (downloaded into it when online); nothing is fetched at import.

Besides the published models this module registers ``rvos-tiny-convnext``: an open_clip config of the same
structure with a small timm ConvNeXt trunk (``convnext_rvos_tiny``) and a 3-layer text tower, trained from
scratch on the synthetic benchmark.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import open_clip
import torch
from timm.models import register_model
from timm.models.convnext import _create_convnext
from torch import nn

from rvos.errors import CheckpointError
from rvos.models.backbones.base import ImageBackbone, TextEncoder, TextFeatures, TokenRows, offline
from rvos.models.meta.base import TextInputs

log = logging.getLogger(__name__)

TEXT_PARTS = ("token_embedding", "positional_embedding", "transformer.", "ln_final", "text_projection")
# CLIP's pooled-image head and contrastive temperature: not on the path to rvos's features, so never trained
# (a trainable parameter that gets no gradient stops DistributedDataParallel)
UNUSED_PARTS = ("visual.head.", "visual.trunk.head.", "visual.attnpool.", "logit_scale", "logit_bias")
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                "model.safetensors", "pytorch_model.bin")


@register_model
def convnext_rvos_tiny(pretrained: bool = False, **kwargs):
    """A small ConvNeXt (depths 1-1-3-1, widths 32-64-128-256) for the synthetic benchmark on a CPU."""
    kwargs.setdefault("pretrained_cfg", {"num_classes": 1000})  # no published weights to describe
    return _create_convnext("convnext_rvos_tiny", pretrained=pretrained, depths=(1, 1, 3, 1), dims=(32, 64, 128, 256),
                            conv_mlp=True, **kwargs)


open_clip.add_model_config(Path(__file__).resolve().parents[2] / "configs" / "open_clip")


class _quiet:
    """Silence warnings of the named loggers inside a ``with`` block."""

    def __init__(self, *names: str):
        self.loggers = [logging.getLogger(n if n != "root" else None) for n in names]

    def __enter__(self):
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)


def _hub_repo(model_name: str, pretrained: str) -> str | None:
    if pretrained.startswith("hf-hub:"):
        return pretrained[len("hf-hub:"):]
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    return cfg.get("hf_hub", "").strip("/") or None


def resolve_weights(model_name: str, pretrained: str, cache_dir: str | None = None) -> Path:
    """The local file holding the weights named by ``pretrained``:

    * a file (``.bin``, ``.pt``, ``.safetensors``);
    * a folder in the layout open_clip and the Hugging Face hub use (``open_clip_config.json`` and one of
      ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``); its config must describe ``model_name``;
    * an open_clip pretrained tag (``laion2b_s29b_b131k_ft_soup``) or ``hf-hub:org/repo``: the file in the
      Hugging Face cache, downloaded into it first unless offline (``HF_HUB_OFFLINE=1`` or ``RVOS_OFFLINE=1``).
    """
    path = Path(pretrained).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        config = path / "open_clip_config.json"
        if config.is_file():
            try:
                model_cfg = json.loads(config.read_text()).get("model_cfg")
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{config} is not valid JSON ({exc})") from None
            expected = open_clip.get_model_config(model_name)
            if model_cfg and expected and _strip(model_cfg) != _strip(expected):
                raise CheckpointError(f"{path} holds another CLIP model than {model_name!r} (its open_clip_config.json "
                                      "differs); set model.backbone.model to the model these weights are for")
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds none of the weight files {', '.join(WEIGHT_FILES)}")
    repo = _hub_repo(model_name, pretrained)
    if repo is None:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise CheckpointError(f"CLIP weights {pretrained!r} are not a file, a folder, or a pretrained tag of "
                              f"{model_name!r} (its tags: {tags})")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for name in WEIGHT_FILES[:3]:
        cached = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(cached, str):
            return Path(cached)
    errors = []
    if not offline():
        for name in WEIGHT_FILES[:3]:
            try:
                return Path(hf_hub_download(repo, name, cache_dir=cache_dir))
            except Exception as exc:  # not in the repo, or no network
                errors.append(f"{name}: {type(exc).__name__}")
    reason = "offline (HF_HUB_OFFLINE / RVOS_OFFLINE)" if offline() else f"download failed ({'; '.join(errors)})"
    raise CheckpointError(
        f"CLIP weights {pretrained!r} for {model_name!r} are not in the Hugging Face cache and could not be fetched: "
        f"{reason}. Download open_clip_pytorch_model.bin from https://huggingface.co/{repo} and set "
        "model.backbone.pretrained=/path/to/that/file (or its folder)"
    )


def _strip(cfg: dict) -> dict:
    """The parts of an open_clip model config that decide the architecture."""
    return {k: cfg[k] for k in ("embed_dim", "vision_cfg", "text_cfg") if k in cfg}


class CLIPBackbone(ImageBackbone, TextEncoder):
    """Multi-scale image features and token / sentence text features from one OpenCLIP model (both interfaces
    of :mod:`rvos.models.backbones.base`)."""

    strides = [4, 8, 16, 32]

    def __init__(self, model_name: str, pretrained: str | None = None, frozen: bool = True,
                 cache_dir: str | None = None, token_init_std: float | None = None, text_frozen: bool | None = None,
                 sentence_pooling: str = "eot"):
        super().__init__()
        try:
            with _quiet("open_clip", "root"):  # its "no pretrained weights loaded": rvos loads them itself
                self.clip = open_clip.create_model(model_name, pretrained=None)
        except RuntimeError as exc:
            raise CheckpointError(f"unknown open_clip model {model_name!r} ({exc})") from None
        if sentence_pooling not in ("eot", "mean"):
            raise ValueError(f"sentence pooling {sentence_pooling!r}: expected 'eot' or 'mean'")
        self.sentence_pooling = sentence_pooling
        if token_init_std is not None:
            # CLIP's token embeddings start at std 0.02, far below the residual branches' outputs, which suits
            # contrastive pre-training on millions of captions; a text tower trained from scratch on a small task
            # keeps the words apart from the start when they start larger
            nn.init.normal_(self.clip.token_embedding.weight, std=token_init_std)
        if pretrained:
            self.load_weights(resolve_weights(model_name, pretrained, cache_dir))
        self.model_name = model_name
        self.frozen = frozen
        visual = self.clip.visual
        self.kind = "convnext" if hasattr(visual, "trunk") else "resnet"
        if self.kind == "resnet" and not hasattr(visual, "layer4"):
            raise CheckpointError(f"{model_name!r} is not a convolutional CLIP (ConvNeXt or ResNet); "
                                  "multi-scale features need one")
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self._token_rows = TokenRows()
        mean, std = visual.preprocess_cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), \
            visual.preprocess_cfg.get("std", open_clip.OPENAI_DATASET_STD)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            feats = self.forward_image(torch.zeros(1, 3, 64, 64))
        self.channels = [f.shape[1] for f in feats]  # strides 4, 8, 16, 32
        self.width = self.clip.token_embedding.embedding_dim
        proj = self.clip.text_projection
        self.sentence_dim = proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]
        self.context_length = self.clip.context_length
        if frozen:
            self.clip.requires_grad_(False)
            self.clip.eval()
        self.text_frozen = frozen if text_frozen is None else text_frozen
        for name, p in self.clip.named_parameters():
            if name.startswith(TEXT_PARTS):
                p.requires_grad_(not self.text_frozen)
            elif name.startswith(UNUSED_PARTS):
                p.requires_grad_(False)

    def load_weights(self, path: Path) -> None:
        try:
            open_clip.load_checkpoint(self.clip, str(path), strict=True)
        except RuntimeError as exc:
            lines = str(exc).splitlines()
            raise CheckpointError(f"{path} does not hold the weights of this CLIP model: {lines[0][:300]}") from None
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None

    def is_text_parameter(self, name: str) -> bool:
        return name.startswith(tuple(f"clip.{part}" for part in TEXT_PARTS))

    def tokenize(self, sentences: list[str]) -> TextInputs:
        """Token ids (N, L), cut after the longest sentence's end-of-text token: CLIP's text attention is causal,
        so the padding after it changes nothing before it, and every later layer masks it (the text side then
        costs what the sentences need, not CLIP's full context of 77). Each sentence is tokenized once and its ids kept
        (up to ``TOKEN_CACHE`` sentences)."""
        tokens = (torch.stack(self._token_rows.rows(sentences, lambda m: self.tokenizer(m).unbind(0))) if sentences
                  else self.tokenizer(sentences))
        if self.clip.attn_mask is not None and tokens.shape[0]:
            tokens = tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]
        return TextInputs(tokens=tokens)

    def bag_of_tokens(self, text: TextInputs) -> torch.Tensor:
        """(N, width): the mean of each sentence's token embeddings, its words alone (no start, end or padding
        token), in no order: a sentence feature that needs no training of the text transformer."""
        tokens = text["tokens"]
        special = {0, *(self.tokenizer.encoder[t] for t in ("<start_of_text>", "<end_of_text>")
                        if hasattr(self.tokenizer, "encoder") and t in self.tokenizer.encoder)}
        words = torch.ones_like(tokens, dtype=torch.bool)
        for t in special:
            words &= tokens != t
        embeds = self.clip.token_embedding(tokens) * words[..., None]
        return embeds.sum(1) / words.sum(1, keepdim=True).clamp(min=1)

    def forward_image(self, images: torch.Tensor, clip_length: int | None = None) -> list[torch.Tensor]:
        """images (N, 3, H, W) in [0, 1], H and W multiples of 32 -> features at strides 4, 8, 16, 32."""
        x = (images - self.pixel_mean) / self.pixel_std
        visual = self.clip.visual
        feats = []
        if self.kind == "convnext":
            x = visual.trunk.stem(x)
            for stage in visual.trunk.stages:
                x = stage(x)
                feats.append(x)
        else:
            x = visual.act1(visual.bn1(visual.conv1(x)))
            x = visual.act2(visual.bn2(visual.conv2(x)))
            x = visual.act3(visual.bn3(visual.conv3(x)))
            x = visual.avgpool(x)
            for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
                x = layer(x)
                feats.append(x)
        return feats

    def forward_text(self, inputs: TextInputs) -> TextFeatures:
        """tokens (N, L) -> words (N, L, W), padding (N, L) True after the end-of-text token, sentence (N, E)."""
        tokens = inputs["tokens"]
        clip = self.clip
        x = clip.token_embedding(tokens) + clip.positional_embedding[: tokens.shape[1]]
        mask = clip.attn_mask[: tokens.shape[1], : tokens.shape[1]] if clip.attn_mask is not None else None
        batch_first = getattr(clip.transformer, "batch_first", True)
        x = clip.transformer(x if batch_first else x.transpose(0, 1), attn_mask=mask)
        words = clip.ln_final(x if batch_first else x.transpose(0, 1))
        eot = tokens.argmax(dim=-1)  # the end-of-text token has the largest id
        padding = torch.arange(tokens.shape[1], device=tokens.device)[None] > eot[:, None]
        if self.sentence_pooling == "mean":  # the mean of the sentence's tokens, start and end included
            keep = (~padding).unsqueeze(-1).to(words.dtype)
            pooled = (words * keep).sum(1) / keep.sum(1)
        else:  # CLIP's: the end-of-text token
            pooled = words[torch.arange(words.shape[0], device=words.device), eot]
        proj = clip.text_projection
        sentence = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
        return TextFeatures(words, padding, sentence)
