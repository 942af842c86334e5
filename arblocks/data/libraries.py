"""Datasets of other libraries: ``hf:NAME[:CONFIG]`` through Hugging Face ``datasets`` and ``torchvision:NAME`` through
torchvision, both optional (``pip install 'arblocks[data]'`` gives the first; torchvision must match the installed
torch). Their downloads go to the data cache's ``hf`` and ``torchvision`` folders; offline, the libraries' own caches
are used and a missing dataset is a clear error.

The images of a split are converted to uint8 arrays once, in memory. An image column is the first of the
``Image`` feature type (else one named ``image``/``img``); labels are the first ``ClassLabel`` column (else ``label``).
"""

from __future__ import annotations

import inspect
from typing import Literal

import numpy as np

from ..core.hookspecs import hookimpl
from .base import DataError, DatasetConfig, DatasetType, ImageData, bits_of, to_nchw
from .cache import dataset_folder, offline
from .sources import labels_of

#: arblocks' split names -> the names libraries use, in order of preference
SPLIT_NAMES = {"train": ("train",), "test": ("test",), "valid": ("validation", "valid", "val")}


def _stack(images, source: str) -> np.ndarray:
    """PIL images or arrays of one size -> uint8 [N, H, W(, C)]."""
    arrays = []
    for image in images:
        if hasattr(image, "mode"):  # a PIL image: grey stays one channel, anything else becomes RGB
            image = image.convert("L" if image.mode in ("L", "1", "I;16", "I", "F") else "RGB")
        arrays.append(np.asarray(image))
    if len({a.shape for a in arrays}) > 1:
        raise DataError(f"{source}: the images do not all have one size ({sorted({a.shape for a in arrays})[:3]} ...); --resize and --crop apply after loading, so choose a dataset of one size")
    return np.stack(arrays) if arrays else np.zeros((0, 1, 1), np.uint8)


class HuggingFaceConfig(DatasetConfig):
    """Any Hugging Face image dataset, ``hf:NAME`` or ``hf:NAME:CONFIG`` (NAME: a Hub id such as uoft-cs/cifar10, or a
    local folder of parquet or image files), loaded with ``datasets.load_dataset`` (cache: the data cache's hf folder)."""

    type: Literal["hf"] = "hf"


class HuggingFace(DatasetType):
    Config = HuggingFaceConfig

    def load(self, split):
        if offline():  # the libraries read these at import; set both before
            import os

            os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
        try:
            import datasets
        except ImportError:
            raise DataError("hf: Hugging Face datasets are read with the datasets package: pip install 'arblocks[data]'") from None
        if offline():
            datasets.config.HF_HUB_OFFLINE = True
        name, _, config = self.config.path.partition(":")
        if split not in SPLIT_NAMES:
            raise DataError(f"hf: unknown split '{split}': use train, valid or test")
        source = f"hf:{self.config.path}"
        try:
            builder = datasets.load_dataset(name, config or None, cache_dir=str(dataset_folder("hf")))
        except Exception as error:  # noqa: BLE001 - no network, an unknown name, a gated set: say what to do
            hint = ("downloads are off (HF_HUB_OFFLINE / ARBLOCKS_OFFLINE): download it once online, or give a local folder as hf:PATH"
                    if offline() else "check the name on the Hub, or give a local folder as hf:PATH")
            raise DataError(f"{source}: cannot load the dataset ({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}); {hint}") from None
        available = list(builder)
        chosen = next((s for s in SPLIT_NAMES[split] if s in builder), None)
        if chosen is None:
            raise DataError(f"{source} has no {split} split (it has {', '.join(available)})")
        part = builder[chosen]
        features = part.features
        image_column = next((k for k, f in features.items() if isinstance(f, datasets.Image)), None) or next(
            (k for k in ("image", "img") if k in features), None)
        if image_column is None:
            raise DataError(f"{source}: no image column (columns: {', '.join(features)})")
        label_column = next((k for k, f in features.items() if isinstance(f, datasets.ClassLabel)), None) or ("label" if "label" in features else None)
        images = to_nchw(_stack(part[image_column], source), source)
        labels = labels_of(part[label_column]) if label_column else None
        return ImageData(images, labels, bits_of(images))


class TorchvisionConfig(DatasetConfig):
    """Any torchvision dataset class by name, ``torchvision:NAME`` (e.g. torchvision:KMNIST), built with
    ``root`` the data cache's torchvision folder and ``download`` unless offline."""

    type: Literal["torchvision"] = "torchvision"


class Torchvision(DatasetType):
    Config = TorchvisionConfig

    def load(self, split):
        try:
            import torchvision.datasets as tv
        except Exception as error:  # noqa: BLE001 - missing, or built for another torch ("operator torchvision::nms does not exist")
            raise DataError(f"torchvision: cannot import torchvision ({type(error).__name__}: {str(error)[:160]}); install the release built "
                            "for your torch (pip install torchvision with the matching version)") from None
        name = self.config.path
        cls = getattr(tv, name, None)
        if not inspect.isclass(cls):
            known = sorted(n for n in dir(tv) if inspect.isclass(getattr(tv, n)) and n[0].isupper())
            raise DataError(f"torchvision: no dataset '{name}' (it has {', '.join(known[:40])} ...)")
        parameters = inspect.signature(cls).parameters
        if split not in SPLIT_NAMES:
            raise DataError(f"torchvision:{name}: unknown split '{split}': use train, valid or test")
        kwargs = {"root": str(dataset_folder("torchvision"))}
        if "download" in parameters:
            kwargs["download"] = not offline()
        if "train" in parameters:
            if split == "valid":
                raise DataError(f"torchvision:{name} has only a train and a test split")
            kwargs["train"] = split == "train"
        elif "split" in parameters:
            kwargs["split"] = {"valid": "valid"}.get(split, split)
        try:
            dataset = cls(**kwargs)
        except Exception as error:  # noqa: BLE001 - no network, missing files, a wrong split: one clear message
            raise DataError(f"torchvision:{name}: cannot load the {split} split ({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}); "
                            f"its files go under {kwargs['root']}" + (" (downloads are off: ARBLOCKS_OFFLINE / HF_HUB_OFFLINE)" if offline() else "")) from None
        return _torchvision_images(dataset, f"torchvision:{name}")


def _torchvision_images(dataset, source: str) -> ImageData:
    """A torchvision dataset's images: its ``data`` array when it has one of uint8 images, else each item's image."""
    data = getattr(dataset, "data", None)
    if data is not None and hasattr(data, "__len__") and len(data) == len(dataset) and str(getattr(data, "dtype", "")).endswith("uint8"):
        images = to_nchw(np.asarray(data), source)
    else:
        images = to_nchw(_stack((dataset[i][0] for i in range(len(dataset))), source), source)
    targets = next((getattr(dataset, n) for n in ("targets", "labels") if getattr(dataset, n, None) is not None), None)
    labels = None
    if targets is not None and len(targets) == len(images):
        try:
            labels = labels_of(np.asarray(targets)).reshape(-1)
        except (TypeError, ValueError):
            labels = None
    return ImageData(images, labels if labels is not None and len(labels) == len(images) else None, bits_of(images))


@hookimpl
def arblocks_register_datasets(register):
    for cls in (HuggingFace, Torchvision):
        register(cls)
