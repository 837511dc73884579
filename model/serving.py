"""The dtype an engine serves a checkpoint in, and the dense peak its matmuls run at.

A checkpoint's ``torch_dtype`` is how it is stored, not always how it is served.
vLLM's ``--dtype auto`` (its default; ``_resolve_auto_dtype`` in vllm/config) picks:

1. the platform's dtypes: on CUDA, compute capability ≥ 8.0 (Ampere and later, every GPU
   with a bf16 tensor path) gives (bf16, fp16, fp32); 6.0–7.5 (V100, T4) gives (fp16, fp32);
2. minus fp16 for model types that are unstable in it (gemma2, gemma3, gemma3_text, plamo2,
   glm4); the first one left is the *preferred* dtype;
3. a float32 checkpoint (also one whose config names no dtype and whose files say none
   either: float32 is the default) is served in the preferred dtype;
4. any other dtype the platform supports is served as it is; one it does not (bf16 on a
   T4) falls back to the preferred dtype.

SGLang's older copy of the rule serves float32 checkpoints in fp16 instead: the same two
bytes per value and, on every GPU in the table, the same peak. llama.cpp computes in what
the GGUF file stores, so no rule applies to GGUF models.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from infermon.model.calc import pick_compute_dtype
from infermon.model.figures import ModelFigures, model_figures
from infermon.model.loaders import LoadedModel

# vLLM's _FLOAT16_NOT_SUPPORTED_MODELS: "Numerical instability. Please use bfloat16 or float32 instead."
FP16_UNSUPPORTED_MODELS = frozenset({"gemma2", "gemma3", "gemma3_text", "plamo2", "glm4"})

_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def platform_dtypes(gpu_dtypes: Collection[str] | None) -> tuple[str, ...]:
    """The float dtypes vLLM serves in on a GPU, preferred first.

    ``gpu_dtypes`` are the dtypes the GPU has a dense peak for (the table's keys); a GPU with
    a bf16 path is compute capability 8.0 or later. ``None`` (a GPU not in the table): taken
    as a current one, (bf16, fp16, fp32).
    """
    if gpu_dtypes is None or "bf16" in gpu_dtypes:
        return ("bf16", "fp16", "fp32")
    return ("fp16", "fp32")


@dataclass(frozen=True)
class ServingDtype:
    """The dtype weights and activations are served in, and why (``note`` None: as stored)."""

    dtype: str
    note: str | None = None


def auto_dtype(stored: str, model_type: str, gpu_dtypes: Collection[str] | None, gpu_name: str = "this GPU") -> ServingDtype:
    """vLLM's ``dtype=auto`` for a checkpoint stored as ``stored`` (see the module docstring).

    Only float dtypes (fp32, bf16, fp16) take part; anything else is served as it is.
    """
    if stored not in _NAMES:
        return ServingDtype(stored)
    supported = [d for d in platform_dtypes(gpu_dtypes)
                 if not (d == "fp16" and model_type in FP16_UNSUPPORTED_MODELS)]
    preferred = supported[0]
    if stored == "fp32" and preferred != "fp32":
        return ServingDtype(preferred, f"stored as float32: served in {preferred}, as vLLM's dtype=auto "
                                       "does (give --dtype fp32 for the checkpoint as stored)")
    if stored in supported:
        if stored == "fp32" and model_type in FP16_UNSUPPORTED_MODELS:
            return ServingDtype(stored, f"stored as float32 and {gpu_name} has no bf16 tensor path, while vLLM does "
                                        f"not run {model_type} in fp16: served in float32")
        return ServingDtype(stored)
    why = f"{gpu_name} has no {stored} tensor path"
    if model_type in FP16_UNSUPPORTED_MODELS and preferred != "fp16":
        why += f" and vLLM does not run {model_type} in fp16"
    return ServingDtype(preferred, f"{why}: served in {preferred}, as vLLM falls back")


@dataclass(frozen=True)
class Served:
    """A model as an engine serves it on a GPU: figures, the dtype whose peak applies, and what was decided.

    ``notes`` say what was chosen and why (what may make the figures wrong, such as a dtype
    that had to be assumed, is :mod:`~infermon.model.plausibility`'s to say).
    """

    figures: ModelFigures
    compute_dtype: str
    notes: tuple[str, ...] = ()


def serve(
    loaded: LoadedModel,
    gpu_dtypes: Collection[str] | None,
    *,
    gpu_name: str = "this GPU",
    dtype: str | None = None,
    kv_dtype: str | None = None,
    params_override: float | None = None,
) -> Served:
    """Figures for ``loaded`` served on a GPU with dense peaks for ``gpu_dtypes`` (None: unknown GPU).

    ``dtype`` (the user's ``--dtype``) wins; otherwise a float checkpoint gets vLLM's
    ``dtype=auto`` (:func:`auto_dtype`); quantized checkpoints keep their format and GGUF
    files what they store. The compute dtype is the matmuls' (:func:`pick_compute_dtype`),
    with fp16's peak standing in where the GPU has no bf16 path (the same width).
    """
    spec = loaded.spec
    notes: list[str] = []
    chosen = dtype
    if chosen is None and spec.weight_format is None and spec.dtype_source != "gguf":
        auto = auto_dtype(spec.torch_dtype, spec.model_type, gpu_dtypes, gpu_name)
        if auto.dtype != spec.torch_dtype:
            chosen = auto.dtype
        if auto.note:
            notes.append(auto.note)
    fig = model_figures(spec, dtype=chosen, kv_dtype=kv_dtype, params_override=params_override,
                        exact_weight_bytes=loaded.exact_weight_bytes, stored=loaded.stored)
    available = set(gpu_dtypes) if gpu_dtypes is not None else {fig.activation_dtype}
    compute = pick_compute_dtype(fig, available)
    if compute == "fp16" and fig.activation_dtype == "bf16" and "bf16" not in available:
        notes.append(f"{gpu_name} has no bf16 tensor path: its fp16 peak is used (the same width)")
    return Served(fig, compute, tuple(notes))
