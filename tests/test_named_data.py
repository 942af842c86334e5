"""The standard datasets by name, each against a small fixture in its published on-disk format, in a data cache
of its own (no network: ``ARBLOCKS_OFFLINE``), with the fixture's checksum standing in for the published one."""

import gzip
import hashlib
import io
import struct
import sys
import tarfile
import types
import zipfile

import numpy as np
import pytest
import torch

from arblocks.cli import main
from arblocks.data import DataError, load_raw, standard
from arblocks.data.cache import Remote

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARBLOCKS_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("ARBLOCKS_OFFLINE", "1")
    return tmp_path / "cache"


def publish(monkeypatch, cls, path, name=None):
    """Make the fixture file at ``path`` the 'published' one: its checksum replaces the real file's in ``cls.FILES``."""
    name = name or path.name
    remote = cls.FILES[name]
    files = {**cls.FILES, name: Remote(name, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size, remote.urls)}
    monkeypatch.setattr(cls, "FILES", files)


def idx(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def test_cifar10_by_name_reads_the_binary_version_from_the_cache(cache, monkeypatch):
    rng = np.random.default_rng(0)
    folder = cache / "cifar10"
    folder.mkdir(parents=True)
    records = {name: rng.integers(0, 256, (3, 3073), dtype=np.uint8) for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    for r in records.values():
        r[:, 0] %= 10
    with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for name, rows in records.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}.bin")
            info.size = rows.size
            tar.addfile(info, io.BytesIO(rows.tobytes()))
    with pytest.raises(DataError, match="does not have the published file's checksum") as error:
        load_raw("cifar10", "test")  # the fixture is not the published file
    assert "put cifar-10-binary.tar.gz (170,052,171 bytes, sha256:c4a38c50" in str(error.value)
    publish(monkeypatch, standard.Cifar10, folder / "cifar-10-binary.tar.gz")
    train, test = load_raw("cifar10", "train"), load_raw("cifar10", "test")
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert torch.equal(test.images, torch.from_numpy(records["test_batch"][:, 1:].reshape(3, 3, 32, 32)))
    assert test.labels.tolist() == records["test_batch"][:, 0].tolist()
    with pytest.raises(DataError, match="cifar10 has the splits train, test, not 'valid'"):
        load_raw("cifar10", "valid")


def test_a_missing_file_is_downloaded_through_pooch_and_verified(cache, monkeypatch):
    pooch = pytest.importorskip("pooch")
    monkeypatch.delenv("ARBLOCKS_OFFLINE")
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    payloads = {"train-images-idx3-ubyte.gz": gzip.compress(idx(images)), "train-labels-idx1-ubyte.gz": gzip.compress(idx(np.array([3, 4])))}
    files = {n: Remote(n, "sha256:" + hashlib.sha256(p).hexdigest(), len(p), ("https://mirror.invalid/" + n,)) for n, p in payloads.items()}
    monkeypatch.setattr(standard.Mnist, "FILES", {**standard.Mnist.FILES, **files})
    calls = []

    def retrieve(url, known_hash, fname, path, progressbar):
        calls.append((url, known_hash, progressbar))
        (path / fname).write_bytes(payloads[fname])  # what pooch does once the download matches the checksum

    monkeypatch.setattr(pooch, "retrieve", retrieve)
    data = load_raw("mnist", "train")
    assert data.images.shape == (2, 1, 28, 28) and data.labels.tolist() == [3, 4]
    assert calls[0] == ("https://mirror.invalid/train-images-idx3-ubyte.gz", files["train-images-idx3-ubyte.gz"].checksum, True)

    def unreachable(url, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(pooch, "retrieve", unreachable)
    with pytest.raises(DataError, match=r"could not be downloaded \(https://.*ConnectionError.*\); put t10k-images-idx3-ubyte.gz \(1,648,877 bytes"):
        load_raw("mnist", "test")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_and_fashion_mnist_by_name_read_the_idx_files(cache, monkeypatch, name):
    cls = {"mnist": standard.Mnist, "fashion_mnist": standard.FashionMnist}[name]
    folder = cache / name
    folder.mkdir(parents=True)
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28))
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(np.array([9, 0, 1, 2]))))
        for kind in ("images-idx3", "labels-idx1"):
            publish(monkeypatch, cls, folder / f"{prefix}-{kind}-ubyte.gz")
    data = load_raw(name, "test")
    assert torch.equal(data.images[:, 0], torch.from_numpy(images.astype(np.uint8))) and data.labels.tolist() == [9, 0, 1, 2]


def test_binarized_mnist_has_the_fixed_train_valid_and_test_splits(cache, monkeypatch):
    folder = cache / "binarized_mnist"
    folder.mkdir(parents=True)
    bits = np.random.default_rng(2).integers(0, 2, (3, 784))
    for split in ("train", "valid", "test"):
        path = folder / f"binarized_mnist_{split}.amat"
        path.write_text("".join(" ".join(map(str, row)) + "\n" for row in bits))
        publish(monkeypatch, standard.BinarizedMnist, path)
    data = load_raw("binarized_mnist", "valid")
    assert data.bits == 1 and data.labels is None and torch.equal(data.images.reshape(3, 784), torch.from_numpy(bits.astype(np.uint8)))
    bad = folder / "binarized_mnist_test.amat"
    bad.write_text(bad.read_text().replace("1", "2", 1))
    with pytest.raises(DataError, match="does not have the published file's checksum"):
        load_raw("binarized_mnist", "test")
    with pytest.raises(DataError, match="values other than 0 and 1"):
        load_raw(f"binarized_mnist:{folder}", "test")  # a given folder is read as it is, and checked


def test_svhn_reads_the_matlab_files_and_labels_the_digit_zero_0(cache, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    folder = cache / "svhn"
    folder.mkdir(parents=True)
    x = np.random.default_rng(3).integers(0, 256, (32, 32, 3, 2), dtype=np.uint8)
    scipy_io.savemat(folder / "test_32x32.mat", {"X": x, "y": np.array([[10], [7]], dtype=np.uint8)})
    publish(monkeypatch, standard.Svhn, folder / "test_32x32.mat")
    data = load_raw("svhn", "test")
    assert data.labels.tolist() == [0, 7] and torch.equal(data.images[1], torch.from_numpy(x[..., 1]).permute(2, 0, 1))


def test_celeba_is_cropped_resized_and_kept_decoded(cache, monkeypatch):
    from PIL import Image

    from arblocks.data.transforms import centre_crop, resize

    folder = cache / "celeba"
    folder.mkdir(parents=True)
    faces = np.random.default_rng(4).integers(0, 256, (3, 218, 178, 3), dtype=np.uint8)
    with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as archive:
        for i, face in enumerate(faces):
            png = io.BytesIO()
            Image.fromarray(face).save(png, format="PNG")  # lossless, so the expected pixels are known
            archive.writestr(f"img_align_celeba/{i + 1:06d}.jpg", png.getvalue())
    (folder / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 2\n000003.jpg 0\n")
    for name in ("img_align_celeba.zip", "list_eval_partition.txt"):
        publish(monkeypatch, standard.Celeba32, folder / name)
    train = load_raw("celeba32", "train")
    expected = resize(centre_crop(torch.from_numpy(faces[[0, 2]]).permute(0, 3, 1, 2), 148), 32)
    assert torch.equal(train.images, expected)
    assert (folder / "celeba32.npz").is_file() and load_raw("celeba32", "test").images.shape == (1, 3, 32, 32)
    with pytest.raises(DataError, match=r"celeba: .*list_eval_partition.txt does not have the published file's checksum.*not downloaded for you"):
        load_raw("celeba64", "train")  # celeba64's checksums are the real ones


def test_downsampled_imagenet_needs_its_given_files_and_reads_their_pngs(cache, monkeypatch):
    from PIL import Image

    with pytest.raises(DataError, match=r"imagenet32: .*train_32x32.tar is missing; this dataset is not downloaded for you.*put train_32x32.tar"):
        load_raw("imagenet32", "train")
    folder = cache / "imagenet32"
    folder.mkdir(parents=True)
    pixels = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for part in ("train", "valid"):
        with tarfile.open(folder / f"{part}_32x32.tar", "w") as tar:
            for i, image in enumerate(pixels):
                png = io.BytesIO()
                Image.fromarray(image).save(png, format="PNG")
                info = tarfile.TarInfo(f"{part}_32x32/{i}.png")
                info.size = len(png.getvalue())
                tar.addfile(info, io.BytesIO(png.getvalue()))
        publish(monkeypatch, standard.Imagenet32, folder / f"{part}_32x32.tar")
    data = load_raw("imagenet32", "test")
    assert torch.equal(data.images, torch.from_numpy(pixels).permute(0, 3, 1, 2))


def test_a_hugging_face_dataset_from_a_local_folder_and_the_offline_error_for_a_hub_name(cache, tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    images = np.random.default_rng(6).integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    data = datasets.Dataset.from_dict({"img": [Image.fromarray(i) for i in images], "label": [1, 0, 1]}, features=features)
    (tmp_path / "hf" / "data").mkdir(parents=True)
    data.to_parquet(tmp_path / "hf" / "data" / "train-00000-of-00001.parquet")
    loaded = load_raw(f"hf:{tmp_path / 'hf'}", "train")
    assert torch.equal(loaded.images, torch.from_numpy(images).permute(0, 3, 1, 2)) and loaded.labels.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="has no test split"):
        load_raw(f"hf:{tmp_path / 'hf'}", "test")
    with pytest.raises(DataError, match=r"hf:someone/nothing-here: cannot load the dataset .*downloads are off"):
        load_raw("hf:someone/nothing-here", "train")


def test_a_torchvision_dataset_by_class_name(cache, monkeypatch):
    class FakeMNIST:  # torchvision's dataset protocol: root, train, download; data and targets
        def __init__(self, root, train=True, transform=None, download=False):
            self.args = (root, train, download)
            self.data = torch.full((2 if train else 1, 5, 5), 7, dtype=torch.uint8)
            self.targets = torch.tensor([1, 2] if train else [3])

        def __len__(self):
            return len(self.data)

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(FakeMNIST=FakeMNIST)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    data = load_raw("torchvision:FakeMNIST", "test")
    assert data.images.shape == (1, 1, 5, 5) and data.labels.tolist() == [3]
    with pytest.raises(DataError, match="only a train and a test split"):
        load_raw("torchvision:FakeMNIST", "valid")
    with pytest.raises(DataError, match="no dataset 'Nope'"):
        load_raw("torchvision:Nope", "test")


def test_the_command_line_says_where_to_put_a_missing_file_and_exits_2(cache, tmp_path, capsys):
    status = main(["train", "tests/specs/tiny_digits.json", "--data", "binarized_mnist", "--out", str(tmp_path / "run"), "--steps", "1"])
    err = capsys.readouterr().err
    assert status == 2 and "binarized_mnist_train.amat" in err and str(cache / "binarized_mnist") in err and "ARBLOCKS_OFFLINE" in err


def test_a_path_given_to_a_source_that_takes_none_is_an_error():
    with pytest.raises(DataError, match="'digits' takes no path"):
        load_raw("digits:extra", "train")
