"""The settings of SAM-HQ mask refinement: ``infer.refine`` in a config, and ``rvos refine``'s options."""

from __future__ import annotations

from dataclasses import dataclass

from rvos.errors import ConfigError

# SAM-HQ with the ViT-L image encoder (the PVUW 2024 MeViS 2nd-place report's refiner), converted by the SAM-HQ
# authors' Hugging Face organisation for transformers' SamHQModel (the -base and -huge variants exist too)
SAM_HQ_VIT_L = "syscv-community/sam-hq-vit-large"
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class RefineConfig:
    # SAM-HQ weights: a local folder in transformers' save_pretrained layout (config.json, model.safetensors and
    # preprocessor_config.json), or a Hugging Face repo id read from the cache (downloaded into it when online)
    sam: str = SAM_HQ_VIT_L
    device: str | None = None  # where SAM-HQ runs; None: the segmentation model's device (cpu for `rvos refine`)
    dtype: str = "float32"  # SAM-HQ's weights and activations: float32, bfloat16 or float16 (GPUs)
    batch_size: int = 4  # frames through SAM-HQ's image encoder at once (one embedding per frame, for every mask)
    seed: int = 0  # point sampling: each mask's points come from (seed, the mask's pixels) only
    positive_points: int = 10  # drawn uniformly inside the mask
    negative_points: int = 5  # drawn uniformly outside the mask, inside its box
    # the refined mask's logits: False adds SAM's single-mask output and the HQ token's (HQ-SAM's default, which the
    # report uses); True takes the HQ token's alone (HQ-SAM suggests it for thin structures)
    hq_token_only: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"refine dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.batch_size < 1:
            raise ConfigError("refine batch_size must be at least 1")
        if self.positive_points < 1:
            raise ConfigError("refine positive_points must be at least 1 (SAM-HQ is prompted with points inside "
                              "the mask)")
        if self.negative_points < 0:
            raise ConfigError("refine negative_points cannot be negative")
        if self.seed < 0:
            raise ConfigError("refine seed cannot be negative")
        if not self.sam:
            raise ConfigError(f"refine sam: name SAM-HQ's weights (a folder or a repo id such as {SAM_HQ_VIT_L})")
