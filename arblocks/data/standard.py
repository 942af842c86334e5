"""The standard datasets by name: ``cifar10``, ``mnist``, ``fashion_mnist``, ``binarized_mnist``, ``svhn``,
``celeba32``/``celeba64``, ``imagenet32``/``imagenet64``.

Without a path, each reads its published files from the data cache (``arblocks.data.cache``), verified by checksum
and downloaded when they are missing (the sets whose licence asks for a sign-up, CelebA and downsampled ImageNet,
are never downloaded: the error says which file to put where). With a path (``cifar10:PATH``) it reads the files
in that folder as they are, without checksums. Nothing is unpickled: CIFAR-10 comes as its binary version,
MNIST as idx files, binarized MNIST as the ``.amat`` text files, SVHN as MATLAB files (scipy), CelebA and ImageNet
as images decoded by Pillow. CelebA and ImageNet are decoded once and kept as ``.npz`` arrays next to their files.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from ..core.hookspecs import hookimpl
from .base import DataError, DatasetConfig, DatasetType, ImageData, to_nchw
from .cache import Remote, dataset_folder, fetch
from .sources import NumpyOnlyUnpickler, labels_of, read_idx


class StandardDataset(DatasetType):
    """A named dataset of published files: the path, if given, is a folder holding them (not checked against checksums)."""

    needs_path = False
    NAME: ClassVar[str]
    #: the data cache's folder of the files (default NAME; celeba32 and celeba64 share celeba's)
    CACHE: ClassVar[str | None] = None
    FILES: ClassVar[dict[str, Remote]] = {}
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "test")

    def split_name(self, split: str) -> str:
        if split not in self.SPLITS:
            raise DataError(f"{self.NAME} has the splits {', '.join(self.SPLITS)}, not '{split}'")
        return split

    def file(self, key: str) -> Path:
        """The local file of ``FILES[key]``: in the given folder, or verified (and fetched) in the cache."""
        remote = self.FILES[key]
        if self.config.path:
            path = Path(self.config.path) / remote.name
            if not path.is_file():
                raise DataError(f"{self.NAME}: {self.config.path} has no {remote.name}")
            return path
        return fetch(self.CACHE or self.NAME, remote)

    @property
    def folder(self) -> Path:
        return Path(self.config.path) if self.config.path else dataset_folder(self.CACHE or self.NAME)


def _remotes(*remotes: Remote) -> dict[str, Remote]:
    return {r.name: r for r in remotes}


class Cifar10Config(DatasetConfig):
    """CIFAR-10 (Krizhevsky 2009), 32x32 RGB, 50000 train and 10000 test images with labels. Named: the binary version,
    downloaded and verified; with a path: a cifar-10-batches-bin or cifar-10-batches-py folder (the python batches
    read without running pickled code), or the .tar.gz itself."""

    type: Literal["cifar10"] = "cifar10"


class Cifar10(StandardDataset):
    Config = Cifar10Config
    NAME = "cifar10"
    FILES = _remotes(Remote("cifar-10-binary.tar.gz", "sha256:c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170052171,
                            ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",)))

    def load(self, split):
        names = [f"data_batch_{i}" for i in range(1, 6)] if self.split_name(split) == "train" else ["test_batch"]
        given = Path(self.config.path) if self.config.path else None
        if given is not None and given.is_dir() and not (given / "cifar-10-binary.tar.gz").is_file():
            if (given / names[0]).is_file():
                return self._python_batches(given, names)
            records = [self._bytes(given / f"{n}.bin") for n in names]
        else:
            archive = given if given is not None and given.is_file() else self.file("cifar-10-binary.tar.gz")
            with tarfile.open(archive, "r:gz") as tar:
                records = [self._member(tar, f"cifar-10-batches-bin/{n}.bin") for n in names]
        rows = np.frombuffer(b"".join(records), dtype=np.uint8)
        if rows.size % 3073:
            raise DataError(f"cifar10: the binary batches are not whole records of 1 + 3072 bytes ({rows.size} bytes)")
        rows = rows.reshape(-1, 3073)
        return ImageData(to_nchw(rows[:, 1:].reshape(-1, 3, 32, 32), "cifar10"), labels_of(rows[:, 0]), 8)

    @staticmethod
    def _bytes(path: Path) -> bytes:
        if not path.is_file():
            raise DataError(f"cifar10: no {path.name} in {path.parent} (expected the cifar-10-batches-bin or cifar-10-batches-py folder)")
        return path.read_bytes()

    @staticmethod
    def _member(tar: tarfile.TarFile, name: str) -> bytes:
        try:
            return tar.extractfile(name).read()
        except (KeyError, AttributeError):
            raise DataError(f"cifar10: {tar.name} has no {name}") from None

    @staticmethod
    def _python_batches(folder: Path, names: list[str]) -> ImageData:
        images, labels = [], []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise DataError(f"cifar10: {folder} has no {name} (expected the cifar-10-batches-py folder)")
            try:
                batch = NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
            except DataError:
                raise
            except Exception as error:  # noqa: BLE001 - a malformed file must be a clear error
                raise DataError(f"cifar10: cannot read {path}: {type(error).__name__}: {error}") from None
            data = batch.get(b"data", batch.get("data"))
            images.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch.get(b"labels", batch.get("labels", [])))
        return ImageData(to_nchw(np.concatenate(images), "cifar10"), labels_of(labels) if labels else None, 8)


class MnistConfig(DatasetConfig):
    """MNIST (LeCun et al. 1998), 28x28 grey, 60000 train and 10000 test images with labels, as the four idx files
    (gzipped or not); with a path, the folder holding them."""

    type: Literal["mnist"] = "mnist"


def _idx_files(base: str, checksums: dict[str, tuple[str, int]], mirrors: tuple[str, ...]) -> dict[str, Remote]:
    return _remotes(*(Remote(name, f"sha256:{sha}", size, tuple(m + name for m in mirrors)) for name, (sha, size) in checksums.items()))


class Mnist(StandardDataset):
    Config = MnistConfig
    NAME = "mnist"
    FILES = _idx_files("mnist", {
        "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
        "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
        "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
        "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    }, ("https://storage.googleapis.com/cvdf-datasets/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"))

    def _find(self, stem: str) -> Path:
        if not self.config.path:
            return self.file(stem + ".gz")
        folder = Path(self.config.path)
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
            if (folder / name).is_file():
                return folder / name
        raise DataError(f"{self.NAME}: {folder} has no {stem}[.gz]")

    def load(self, split):
        prefix = "train" if self.split_name(split) == "train" else "t10k"
        images = read_idx(self._find(f"{prefix}-images-idx3-ubyte"))
        try:
            labels = labels_of(read_idx(self._find(f"{prefix}-labels-idx1-ubyte")))
        except DataError:
            if not self.config.path:
                raise
            labels = None
        return ImageData(to_nchw(images, self.NAME), labels, 8)


class FashionMnistConfig(DatasetConfig):
    """Fashion-MNIST (Xiao et al. 2017), 28x28 grey, 60000 train and 10000 test images of clothes with labels, as idx files."""

    type: Literal["fashion_mnist"] = "fashion_mnist"


class FashionMnist(Mnist):
    Config = FashionMnistConfig
    NAME = "fashion_mnist"
    FILES = _idx_files("fashion_mnist", {
        "train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
        "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    }, ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",))


class BinarizedMnistConfig(DatasetConfig):
    """Binarized MNIST with the fixed binarization of Larochelle and Murray (2011), the likelihood benchmark's:
    50000 train, 10000 valid and 10000 test images of 0/1 values, no labels (the .amat text files)."""

    type: Literal["binarized_mnist"] = "binarized_mnist"


class BinarizedMnist(StandardDataset):
    Config = BinarizedMnistConfig
    NAME = "binarized_mnist"
    SPLITS = ("train", "valid", "test")
    FILES = _remotes(*(
        Remote(f"binarized_mnist_{split}.amat", f"sha256:{sha}", size, (f"http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat",))
        for split, sha, size in (("train", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d", 78400000),
                                 ("valid", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2", 15680000),
                                 ("test", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c", 15680000))
    ))

    def load(self, split):
        path = self.file(f"binarized_mnist_{self.split_name(split)}.amat")
        return ImageData(to_nchw(read_amat(path), self.NAME), None, 1)


def read_amat(path: Path) -> np.ndarray:
    """A binarized MNIST .amat file: one image per line, 784 values 0 or 1 separated by single spaces -> [N, 28, 28]."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if raw.size % (2 * 784):
        raise DataError(f"binarized_mnist: {path} is not lines of 784 single-digit values ({raw.size} bytes)")
    values, separators = raw[0::2].reshape(-1, 784), raw[1::2].reshape(-1, 784)
    if not (np.isin(values, (ord("0"), ord("1"))).all() and (separators[:, :-1] == ord(" ")).all() and (separators[:, -1] == ord("\n")).all()):
        raise DataError(f"binarized_mnist: {path} holds values other than 0 and 1, or lines other than 784 values")
    return (values - ord("0")).reshape(-1, 28, 28)


class SvhnConfig(DatasetConfig):
    """SVHN cropped digits (Netzer et al. 2011), 32x32 RGB, 73257 train and 26032 test images with labels 0..9, as
    the MATLAB files train_32x32.mat and test_32x32.mat (read with scipy)."""

    type: Literal["svhn"] = "svhn"


class Svhn(StandardDataset):
    Config = SvhnConfig
    NAME = "svhn"
    FILES = _remotes(
        Remote("train_32x32.mat", "sha256:435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8", 182040794, ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",)),
        Remote("test_32x32.mat", "sha256:cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b", 64275384, ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",)),
    )

    def load(self, split):
        try:
            from scipy.io import loadmat
        except ImportError:
            raise DataError("svhn: its MATLAB files are read with scipy: pip install 'arblocks[data]' (or scipy)") from None
        path = self.file(f"{self.split_name(split)}_32x32.mat")
        try:
            mat = loadmat(path)
            images, labels = mat["X"], mat["y"].reshape(-1).astype(np.int64)
        except Exception as error:  # noqa: BLE001 - a malformed file must be a clear error
            raise DataError(f"svhn: cannot read {path}: {type(error).__name__}: {str(error)[:160]}") from None
        images = np.ascontiguousarray(np.transpose(images, (3, 2, 0, 1)))  # [H, W, C, N] -> [N, C, H, W]
        return ImageData(to_nchw(images, self.NAME), labels_of(labels % 10), 8)  # the digit 0 is labelled 10


class _Decoded(StandardDataset):
    """A set of encoded images (JPEG or PNG), decoded with Pillow once and kept as ``NAME.npz`` in its folder."""

    SIZE: ClassVar[int]

    def load(self, split):
        split = self.split_name(split)
        decoded = self.folder / f"{self.NAME}.npz"
        if not decoded.is_file():
            arrays = self.decode()
            tmp = decoded.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(decoded)
        with np.load(decoded, allow_pickle=False) as f:
            if f"x_{split}" not in f.files:
                raise DataError(f"{self.NAME}: {decoded} has no x_{split}; delete it to decode the images again")
            return ImageData(to_nchw(f[f"x_{split}"], self.NAME), None, 8)

    def decode(self) -> dict[str, np.ndarray]:
        raise NotImplementedError


def decode_image(data: bytes, name: str) -> np.ndarray:
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return np.array(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"{name} is not a readable image ({type(error).__name__}: {str(error)[:120]})") from None


class CelebaConfig(DatasetConfig):
    """CelebA (Liu et al. 2015), the aligned 178x218 faces: the centre 148x148 (as RealNVP), area-resized to 32x32 or
    64x64; the official train/valid/test partition (162770/19867/19962). Needs img_align_celeba.zip and
    list_eval_partition.txt from the CelebA page, placed in the data cache's celeba folder (or the given one)."""

    type: Literal["celeba64"] = "celeba64"


class Celeba32Config(CelebaConfig):
    """CelebA at 32x32: as celeba64, area-resized to 32x32."""

    type: Literal["celeba32"] = "celeba32"


class Celeba(_Decoded):
    Config = CelebaConfig
    NAME = "celeba64"
    SIZE = 64
    SPLITS = ("train", "valid", "test")
    CROP = 148
    CACHE = "celeba"
    FILES = _remotes(Remote("img_align_celeba.zip", "md5:00d2c5bc6d35e252742224ab0c1e8fcb", 1443490838),
                     Remote("list_eval_partition.txt", "md5:d32c9cbf5e040fd4025c592c306e6668", 2836386))

    def decode(self):
        import torch

        from .transforms import centre_crop, resize

        partition = {}
        for line in self.file("list_eval_partition.txt").read_text().split("\n"):
            if line.strip():
                name, part = line.split()
                partition[name] = int(part)
        images = {0: [], 1: [], 2: []}
        with zipfile.ZipFile(self.file("img_align_celeba.zip")) as archive:
            for member in sorted(archive.namelist()):
                name = member.rsplit("/", 1)[-1]
                if name in partition:
                    pixels = torch.from_numpy(decode_image(archive.read(member), f"celeba: {member}")).permute(2, 0, 1)[None]
                    images[partition[name]].append(resize(centre_crop(pixels, self.CROP), self.SIZE)[0].numpy())
        return {f"x_{split}": np.stack(images[i]) if images[i] else np.zeros((0, 3, self.SIZE, self.SIZE), np.uint8)
                for i, split in enumerate(self.SPLITS)}


class Celeba32(Celeba):
    Config = Celeba32Config
    NAME = "celeba32"
    SIZE = 32


class ImagenetConfig(DatasetConfig):
    """Downsampled ImageNet (van den Oord et al. 2016), 32x32 or 64x64 RGB, the likelihood benchmark's: 1281149
    train and 49999 test (the official validation) images, no labels. Needs train_NxN.tar and valid_NxN.tar (from
    image-net.org after sign-up) in the data cache's imagenetN folder (or the given one); decoded once to an .npz."""

    type: Literal["imagenet32"] = "imagenet32"


class Imagenet64Config(ImagenetConfig):
    """Downsampled ImageNet at 64x64: as imagenet32, from train_64x64.tar and valid_64x64.tar."""

    type: Literal["imagenet64"] = "imagenet64"


class Imagenet32(_Decoded):
    Config = ImagenetConfig
    NAME = "imagenet32"
    SIZE = 32
    FILES = _remotes(Remote("train_32x32.tar", "sha256:244a323d48f8d72f65ad8b54658c01fed68d2d7bdc77ccb43da58c11e94224e5", 4113018880),
                     Remote("valid_32x32.tar", "sha256:862e559462b24cf736212a19f6b0d47b55c2dc8ebdaa95ccecfe71260124c8f7", 161474560))

    def decode(self):
        arrays = {}
        for split, part in (("train", "train"), ("test", "valid")):
            with tarfile.open(self.file(f"{part}_{self.SIZE}x{self.SIZE}.tar")) as tar:
                members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".png")), key=lambda m: m.name)
                arrays[f"x_{split}"] = np.stack([decode_image(tar.extractfile(m).read(), f"{self.NAME}: {m.name}") for m in members])
        return arrays


class Imagenet64(Imagenet32):
    Config = Imagenet64Config
    NAME = "imagenet64"
    SIZE = 64
    FILES = _remotes(Remote("train_64x64.tar", "sha256:e2a2c1947a748d0d256e98e6d82800d855441dc9e4de2e71a773f1324c4524d7", 12112588800),
                     Remote("valid_64x64.tar", "sha256:eeac03ec4f585baf871d2b4cb9c974bfe345e74878a74e5820fe6eb1041629cd", 477255680))


STANDARD = (Cifar10, Mnist, FashionMnist, BinarizedMnist, Svhn, Celeba, Celeba32, Imagenet32, Imagenet64)


@hookimpl
def arblocks_register_datasets(register):
    for cls in STANDARD:
        register(cls)
