"""SAM-HQ refinement of predicted masks, for any method (the PVUW 2024 MeViS 2nd-place report, section 2.4).

Each non-empty mask of a frame is re-segmented by SAM-HQ (transformers' ``SamHQModel``), prompted with the mask's
box and points inside and outside it (:mod:`rvos.refine.prompts`). The output mask is SAM-HQ's single-mask output
(``multimask_output=False``) with the HQ token's logits added (``hq_token_only=False``), thresholded at 0: the
report runs HQ-SAM "with default parameters", and HQ-SAM's own demo and predictor default to exactly these when
prompted with a box (a box and points describe one object without SAM's part/whole ambiguity, which is what the three
multimask outputs are for).

Frames go through the image encoder in batches of ``batch_size``, only those that have a mask to refine; each
frame's embedding serves every sentence's mask of that frame in one decoder call (masks whose prompts have different
point counts, see :mod:`rvos.refine.prompts`, in one call per count: prompts are never padded, so a mask's result
does not depend on the other masks). SAM-HQ works on the frame resized to its input size (1024 on the long side)
and its masks are brought back to the frame's size by the processor's ``post_process_masks``. Empty masks stay
empty, without a SAM-HQ call; a frame with no mask is not encoded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from rvos.errors import CheckpointError
from rvos.models.backbones.base import offline
from rvos.refine.config import SAM_HQ_VIT_L, RefineConfig
from rvos.refine.prompts import MaskPrompt, mask_prompt

log = logging.getLogger(__name__)

DOWNLOAD = (f"Download SAM-HQ (the report's ViT-L: `hf download {SAM_HQ_VIT_L} --local-dir DIR`) and point "
            "`--sam` (or the config's infer.refine.sam) to that folder")


def _looks_like_path(spec: str) -> bool:
    """A folder, not a repo id ("owner/name"): it exists, or is written as a path."""
    return (Path(spec).expanduser().exists() or spec.startswith(("/", ".", "~")) or spec.count("/") > 1
            or (os.sep != "/" and os.sep in spec))


def load_sam_hq(spec: str = SAM_HQ_VIT_L, dtype: str = "float32"):
    """(model, processor) from a local folder or a Hugging Face repo id (the cache; downloaded when online).

    Raises :class:`CheckpointError` saying what to download when the weights cannot be found, and when the folder
    holds another model, misses weights, or has a processor made for another input size."""
    import transformers
    from transformers import AutoConfig, SamHQModel, SamHQProcessor
    from transformers.models.sam.image_processing_sam import SamImageProcessor

    local = Path(spec).expanduser()
    if _looks_like_path(spec):
        if not local.is_dir():
            raise CheckpointError(f"SAM-HQ folder {local} does not exist. {DOWNLOAD}")
        source, opts = str(local), {"local_files_only": True}
    else:
        source, opts = spec, {"local_files_only": offline()}
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars: rvos reports its own progress
    try:
        try:
            config = AutoConfig.from_pretrained(source, **opts)
        except (OSError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise CheckpointError(f"SAM-HQ weights {spec!r} could not be found ({reason}). {DOWNLOAD}") from None
        if config.model_type != "sam_hq":
            raise CheckpointError(f"{spec} holds a {config.model_type!r} model, not SAM-HQ (model_type 'sam_hq'). "
                                  f"{DOWNLOAD}")
        try:
            model, info = SamHQModel.from_pretrained(source, output_loading_info=True, **opts)
        except (OSError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise CheckpointError(f"SAM-HQ weights {spec!r} could not be loaded ({reason}). {DOWNLOAD}") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise CheckpointError(f"{spec}: {len(missing)} SAM-HQ weights are missing (e.g. {missing[0]}); the folder is "
                              f"incomplete or of another model. {DOWNLOAD}")
    size = config.vision_config.image_size
    try:
        processor = SamHQProcessor.from_pretrained(source, **opts)
    except (OSError, ValueError):  # weights without a preprocessor config: SAM's preprocessing at the model's size
        log.info("%s has no SAM-HQ processor config: SAM's default preprocessing at %d pixels", spec, size)
        processor = SamHQProcessor(SamImageProcessor(size={"longest_edge": size},
                                                     pad_size={"height": size, "width": size}))
    pad = processor.image_processor.pad_size
    if processor.target_size != size or (pad["height"], pad["width"]) != (size, size):
        raise CheckpointError(f"{spec}: the processor resizes to {processor.target_size} and pads to "
                              f"{pad['height']}x{pad['width']}, but the model's input is {size}x{size}")
    return model.to(getattr(torch, dtype)).eval(), processor


class SamHQRefiner:
    """A :data:`~rvos.engine.inference.MaskRefiner`: ``refiner(frames (n, H, W, 3) uint8, masks (K, n, H, W) bool)
    -> refined (K, n, H, W) bool``."""

    def __init__(self, model, processor, device: str | torch.device = "cpu", batch_size: int = 4, seed: int = 0,
                 positive_points: int = 10, negative_points: int = 5, hq_token_only: bool = False):
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.dtype = next(model.parameters()).dtype
        self.processor = processor
        self.batch_size = batch_size
        self.seed = seed
        self.positive_points = positive_points
        self.negative_points = negative_points
        self.hq_token_only = hq_token_only

    @classmethod
    def from_config(cls, cfg: RefineConfig, device: str | torch.device | None = None) -> "SamHQRefiner":
        """SAM-HQ as ``cfg`` says; on ``cfg.device``, else ``device``, else the CPU."""
        model, processor = load_sam_hq(cfg.sam, cfg.dtype)
        return cls(model, processor, cfg.device or device or "cpu", cfg.batch_size, cfg.seed, cfg.positive_points,
                   cfg.negative_points, cfg.hq_token_only)

    def prompt(self, mask: np.ndarray) -> MaskPrompt | None:
        return mask_prompt(mask, self.seed, self.positive_points, self.negative_points)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        frames, masks = np.asarray(frames), np.asarray(masks, dtype=bool)
        if frames.ndim != 4 or masks.ndim != 4 or masks.shape[1:] != frames.shape[:3]:
            raise ValueError(f"frames (n, H, W, 3) and masks (K, n, H, W) of the same frames, got {frames.shape} "
                             f"and {masks.shape}")
        refined = np.zeros_like(masks)
        todo = [t for t in range(frames.shape[0]) if masks[:, t].any()]  # frames with a mask to refine
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            enc = self.processor.image_processor([frames[t] for t in batch], return_tensors="pt",
                                                 input_data_format="channels_last")
            pixels = enc["pixel_values"].to(self.device, self.dtype)  # (B, 3, S, S)
            embeddings, intermediate = self.model.get_image_embeddings(pixels)  # (B, C, S/16, S/16), [(B, .., ..)]
            for j, t in enumerate(batch):
                refined[:, t] = self._refine_frame(
                    embeddings[j:j + 1], [e[j:j + 1] for e in intermediate], masks[:, t],
                    tuple(enc["original_sizes"][j].tolist()), tuple(enc["reshaped_input_sizes"][j].tolist()))
        return refined

    def _refine_frame(self, embedding: torch.Tensor, intermediate: list[torch.Tensor], masks: np.ndarray,
                      size: tuple[int, int], resized: tuple[int, int]) -> np.ndarray:
        """Refine one frame's masks (K, H, W) from its image embedding."""
        out = np.zeros_like(masks)
        prompts = {k: p for k in range(masks.shape[0]) if (p := self.prompt(masks[k])) is not None}
        groups: dict[int, list[int]] = {}
        for k, p in prompts.items():
            groups.setdefault(len(p.points), []).append(k)
        # SAM's coordinates are on the resized frame: x scales with the width, y with the height
        scale = np.array([resized[1] / size[1], resized[0] / size[0]], np.float32)
        for ks in groups.values():
            points = np.stack([prompts[k].points for k in ks]).astype(np.float32) * scale  # (P, N, 2)
            labels = np.stack([prompts[k].labels for k in ks])  # (P, N)
            boxes = np.stack([prompts[k].box for k in ks]).astype(np.float32) * np.tile(scale, 2)  # (P, 4)
            result = self.model(
                image_embeddings=embedding, intermediate_embeddings=intermediate,
                input_points=torch.from_numpy(points)[None].to(self.device),
                input_labels=torch.from_numpy(labels)[None].to(self.device),
                input_boxes=torch.from_numpy(boxes)[None].to(self.device),
                multimask_output=False, hq_token_only=self.hq_token_only)
            logits = result.pred_masks[0].float()  # (P, 1, S/4, S/4)
            refined = self.processor.image_processor.post_process_masks([logits], [size], [resized])[0]
            out[ks] = refined[:, 0].cpu().numpy()
        return out


def build_refiner(cfg: RefineConfig | None, device: str | torch.device | None = None) -> SamHQRefiner | None:
    """The refiner ``infer.refine`` asks for (None when it is not set)."""
    return SamHQRefiner.from_config(cfg, device) if cfg is not None else None
