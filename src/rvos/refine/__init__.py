"""SAM-HQ mask refinement, usable by every method (the PVUW 2024 MeViS 2nd-place report's post-processing).

* :class:`RefineConfig`: the settings (``infer.refine`` in a config, ``rvos refine``'s options).
* :mod:`rvos.refine.prompts`: the box and the positive / negative points each mask is prompted with.
* :class:`~rvos.refine.sam_hq.SamHQRefiner`: a :data:`~rvos.engine.inference.MaskRefiner` over transformers'
  ``SamHQModel``, for the :class:`~rvos.engine.inference.Predictor` (``infer.refine``).
* :func:`~rvos.refine.predictions.refine_predictions`: refines a folder of predictions of any method
  (``rvos refine``).

Only the settings are imported here; torch and transformers load with the refiner.
"""

from rvos.refine.config import SAM_HQ_VIT_L, RefineConfig

__all__ = ["SAM_HQ_VIT_L", "RefineConfig"]
