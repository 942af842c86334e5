"""Weights in and out: the folder format models are shared in (``spec.json``, ``model.safetensors``, a model card),
:func:`from_pretrained` for a folder or a Hugging Face Hub id, :func:`export` from a run or checkpoint, and
:func:`import_weights` from an original implementation's released weights (importers are a registered kind)."""

from .folder import PretrainedError, export, load_folder
from .importer import WeightImporter, WeightImportError, import_weights
from .pretrained import from_pretrained, load_pretrained, resolve

__all__ = ["PretrainedError", "WeightImportError", "WeightImporter", "export", "from_pretrained", "import_weights", "load_folder", "load_pretrained", "resolve"]
