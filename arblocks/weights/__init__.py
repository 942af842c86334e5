"""Weights in and out: the folder format models are shared in (``spec.json``, ``model.safetensors``, a model card),
:func:`from_pretrained` for a folder or a Hugging Face Hub id, and :func:`export` from a run or checkpoint."""

from .folder import PretrainedError, export, load_folder
from .pretrained import from_pretrained, load_pretrained, resolve

__all__ = ["PretrainedError", "export", "from_pretrained", "load_folder", "load_pretrained", "resolve"]
