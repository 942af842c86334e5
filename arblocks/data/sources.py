"""Built-in data sources of files the user has: digits (embedded), npz, folder (PNG); and the readers of idx files and
of pickled numpy batches (without running pickled code) that the standard datasets use (``standard``)."""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..core.hookspecs import hookimpl
from .base import DataError, DatasetConfig, DatasetType, ImageData, bits_of, to_nchw

SPLITS = ("train", "test")


def _split(split: str, source: str, valid: bool = False) -> str:
    """``split`` checked: train and test, and valid where the source can have one (never another split in its place)."""
    if split not in SPLITS and not (valid and split == "valid"):
        raise DataError(f"{source} has no '{split}' split: use {'train, valid or test' if valid else 'train or test'}")
    return split


def labels_of(array) -> torch.Tensor | None:
    return None if array is None else torch.as_tensor(np.asarray(array).astype(np.int64))


class DigitsConfig(DatasetConfig):
    """The UCI optical digits as scikit-learn ships them (8x8, 17 grey levels scaled to 8 bits), embedded: no download (CC BY 4.0)."""

    type: Literal["digits"] = "digits"


class Digits(DatasetType):
    Config = DigitsConfig
    needs_path = False
    takes_path = False
    TRAIN = 1500  # the first 1500 images train, the other 297 test

    def load(self, split):
        with np.load(Path(__file__).parent / "digits.npz", allow_pickle=False) as f:
            x, y = f["x"], f["y"]
        part = slice(0, self.TRAIN) if _split(split, "digits") == "train" else slice(self.TRAIN, None)
        images = np.rint(x[part].astype(np.float64) * 255 / 16).astype(np.uint8)
        return ImageData(to_nchw(images, "digits"), labels_of(y[part]), 8)


class NpzConfig(DatasetConfig):
    """uint8 arrays in a NumPy .npz file: x_train / x_test (or x), labels y_train / y_test (or y); --data-key picks another array."""

    type: Literal["npz"] = "npz"


class Npz(DatasetType):
    Config = NpzConfig

    def load(self, split):
        path = Path(self.config.path)
        if not path.is_file():
            raise DataError(f"npz: no such file: {path}")
        with path.open("rb") as head:
            if head.read(4) != b"PK\x03\x04":
                raise DataError(f"npz: {path} is not a NumPy .npz file (a zip archive of .npy arrays, as numpy.savez writes)")
        try:
            f = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise DataError(f"npz: cannot read {path}: {error}") from None
        with f:
            split = _split(split, "npz", valid=True)
            names = [self.config.key] if self.config.key else [f"x_{split}"] + (["x"] if split != "valid" else [])
            key = next((n for n in names if n in f.files), None)
            if key is None:
                raise DataError(f"npz: {path} has no array {' or '.join(names)} (it has {', '.join(f.files)}); choose one with --data-key")
            label_key = key.replace("x", "y", 1) if key.startswith("x") else None
            images = to_nchw(_array(f, key, path), f"npz:{path}")
            labels = labels_of(_array(f, label_key, path)) if label_key in f.files else None
        return ImageData(images, labels, bits_of(images))


def _array(f, key: str, path: Path) -> np.ndarray:
    try:
        return f[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:  # object arrays need pickle, which could run code; truncated or corrupt members
        reason = "it holds Python objects, which are not loaded (unpickling could run code)" if "allow_pickle" in str(error) else str(error)[:160]
        raise DataError(f"npz: cannot read array '{key}' of {path}: {reason}; save the images as a uint8 array") from None


def read_idx(path: Path) -> np.ndarray:
    """An idx file (the MNIST format), gzipped or not."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"mnist: {path} is not an idx file of unsigned bytes")
    dims = raw[3]
    shape = struct.unpack(f">{dims}I", raw[4 : 4 + 4 * dims])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise DataError(f"mnist: {path} is truncated ({data.size} values for shape {list(shape)})")
    return data.reshape(shape)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts and strings, and refuses everything else (no arbitrary code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"cifar10: refusing to unpickle {module}.{name}: only numpy arrays are read from CIFAR-10 batches")


class FolderConfig(DatasetConfig):
    """PNG images in a folder (train/ and test/ subfolders if present; class subfolders give labels), read with Pillow."""

    type: Literal["folder"] = "folder"


class Folder(DatasetType):
    Config = FolderConfig

    def load(self, split):
        from PIL import Image

        root = Path(self.config.path)
        if not root.is_dir():
            raise DataError(f"folder: no such folder: {root}")
        if _split(split, "folder", valid=True) == "valid" and not (root / split).is_dir():
            raise DataError(f"folder: {root} has no valid/ subfolder, so no validation split")
        base = root / split if (root / split).is_dir() else root
        files = sorted(base.rglob("*.png"))
        if not files:
            raise DataError(f"folder: no .png images under {base}")
        classes = sorted({f.parent.relative_to(base).as_posix() for f in files})
        arrays, labels = [], []
        for f in files:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is refused before it is decoded
                    with Image.open(f) as im:
                        arrays.append(np.asarray(im.convert("L" if im.mode in ("L", "1", "P", "I;16") else "RGB")))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:  # not an image, truncated, corrupt, a bomb
                raise DataError(f"folder: {f} is not a readable PNG image ({type(error).__name__}: {str(error)[:120]}); remove or replace it") from None
            labels.append(classes.index(f.parent.relative_to(base).as_posix()))
        if len({a.shape for a in arrays}) != 1:
            raise DataError(f"folder: the images under {base} do not all have one size")
        return ImageData(to_nchw(np.stack(arrays), f"folder:{base}"), labels_of(labels) if len(classes) > 1 else None, 8)


@hookimpl
def arblocks_register_datasets(register):
    for cls in (Digits, Npz, Folder):
        register(cls)
