"""Data sources: each format read from files written here, the safe CIFAR-10 unpickler, and fitting data to a spec."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from arblocks import ImageSpec
from arblocks.data import load_data
from arblocks.data.base import DataError

GREY8 = ImageSpec(channels=1, height=8, width=8, bits=8)


def idx_bytes(array: np.ndarray) -> bytes:
    return b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_digits_is_embedded_and_split():
    train, test = load_data("digits", "train", GREY8), load_data("digits", "test", GREY8)
    assert (len(train), len(test)) == (1500, 297) and train.labels is not None
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    for stem, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        (tmp_path / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    data = load_data(f"mnist:{tmp_path}", "test", GREY8)
    assert torch.equal(data.images[:, 0], torch.from_numpy(images)) and data.labels.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="has no train-images-idx3-ubyte"):
        load_data(f"mnist:{tmp_path}", "train", GREY8)


def cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
    path.write_bytes(pickle.dumps(batch))
    return batch


def test_cifar10_batches_are_read_without_running_code(tmp_path):
    batch = cifar_batch(tmp_path / "test_batch", 3, 0)
    data = load_data(f"cifar10:{tmp_path}", "test", ImageSpec(channels=3, height=32, width=32, bits=8))
    assert torch.equal(data.images.reshape(3, -1), torch.from_numpy(batch[b"data"]))
    assert data.labels.tolist() == [0, 1, 2]

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(DataError, match="refusing to unpickle builtins.print"):
        load_data(f"cifar10:{tmp_path}", "test", ImageSpec(channels=3, height=32, width=32, bits=8))


def test_folder_of_pngs_with_class_subfolders(tmp_path):
    for label in ("cats", "dogs"):
        (tmp_path / "test" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), 40 * i + (label == "dogs") * 100, dtype=np.uint8)).save(tmp_path / "test" / label / f"{i}.png")
    data = load_data(f"folder:{tmp_path}", "test", GREY8)
    assert len(data) == 4 and data.labels.tolist() == [0, 0, 1, 1]
    assert data.images[2, 0, 0, 0] == 100


def test_npz_keys_binarize_and_bit_reduction(tmp_path):
    x = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(4), other=x[:2])
    assert len(load_data(f"npz:{tmp_path / 'd.npz'}", "train", GREY8)) == 4
    assert len(load_data(f"npz:{tmp_path / 'd.npz'}", "train", GREY8, key="other")) == 2
    four = load_data(f"npz:{tmp_path / 'd.npz'}", "train", ImageSpec(channels=1, height=8, width=8, bits=4))
    assert torch.equal(four.images, torch.from_numpy(x)[:, None] >> 4)
    binary = load_data(f"npz:{tmp_path / 'd.npz'}", "train", ImageSpec(channels=1, height=8, width=8, bits=1), binarize=True)
    assert torch.equal(binary.images, (torch.from_numpy(x)[:, None] >= 128).to(torch.uint8))
    with pytest.raises(DataError, match="has no array x_test or x"):
        load_data(f"npz:{tmp_path / 'd.npz'}", "test", GREY8)
    with pytest.raises(DataError, match=r"the data's images are 1x8x8 .* the spec's image is 3x8x8"):
        load_data(f"npz:{tmp_path / 'd.npz'}", "train", ImageSpec(channels=3, height=8, width=8, bits=8))


def test_tiny_channels_last_rgb_images_are_read_as_the_spec_expects(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)  # 4x4 RGB, channels last: ambiguous alone
    np.savez(tmp_path / "rgb.npz", x=x)
    data = load_data(f"npz:{tmp_path / 'rgb.npz'}", "train", ImageSpec(channels=3, height=4, width=4, bits=8))
    assert torch.equal(data.images, torch.from_numpy(x).permute(0, 3, 1, 2))


def test_one_bit_data_cannot_feed_an_eight_bit_spec(tmp_path):
    np.savez(tmp_path / "b.npz", x=np.ones((2, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match="1-bit values but the spec models 8-bit"):
        load_data(f"npz:{tmp_path / 'b.npz'}", "train", GREY8)


def test_shared_data_when_present():
    from pathlib import Path

    path = Path(__file__).parent.parent.parent / "shared/data/tiny/cifar10_test_first256.npz"
    if not path.exists():
        pytest.skip("../shared/data is not here")
    data = load_data(f"npz:{path}", "test", ImageSpec(channels=3, height=32, width=32, bits=8))
    assert data.images.shape == (256, 3, 32, 32)


def bad_inputs(tmp_path):
    """(source, what the message must say) for each malformed dataset a user may hand over."""
    (tmp_path / "notzip.npz").write_bytes(b"hello, not a zip")
    np.savez(tmp_path / "objects.npz", x_train=np.array([np.zeros((8, 8)), None], dtype=object))
    np.savez(tmp_path / "wide.npz", x_train=np.full((2, 8, 8), 300, dtype=np.int16))
    np.savez(tmp_path / "floats.npz", x_train=np.zeros((2, 8, 8), dtype=np.float32))
    np.savez(tmp_path / "zeros.npz", x_train=np.zeros((2, 9, 9), dtype=np.uint8))
    np.savez(tmp_path / "fourbit.npz", x_train=np.full((2, 8, 8), 15, dtype=np.uint8))
    (tmp_path / "junk" / "train").mkdir(parents=True)
    (tmp_path / "junk" / "train" / "a.png").write_text("not an image")
    (tmp_path / "torn" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "torn" / "train" / "t.png").write_bytes(whole[: len(whole) // 2])
    return [
        (f"npz:{tmp_path}/notzip.npz", "is not a NumPy .npz file"),
        (f"npz:{tmp_path}/objects.npz", "holds Python objects"),
        (f"npz:{tmp_path}/wide.npz", "int16 values from 300 to 300 are not 8-bit levels"),
        (f"npz:{tmp_path}/floats.npz", "expected integer images"),
        (f"npz:{tmp_path}/zeros.npz", "the data's images are 1x9x9"),
        (f"npz:{tmp_path}/fourbit.npz", "looks like 4-bit levels already"),
        (f"folder:{tmp_path}/junk", "a.png is not a readable PNG image"),
        (f"folder:{tmp_path}/torn", "t.png is not a readable PNG image"),
    ]


def test_malformed_data_gets_a_clear_error_naming_the_file(tmp_path):
    for source, message in bad_inputs(tmp_path):
        with pytest.raises(DataError, match=message):
            load_data(source, "train", ImageSpec(channels=1, height=8, width=8, bits=4))


def test_cli_exits_2_on_malformed_data(tmp_path, capsys):
    from pathlib import Path

    from arblocks.cli import main

    tiny = Path(__file__).parent / "specs" / "tiny_digits.json"
    for i, (source, message) in enumerate(bad_inputs(tmp_path)):
        assert main(["train", str(tiny), "--data", source, "--out", str(tmp_path / f"run{i}"), "--steps", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and "internal error" not in err and "Traceback" not in err


def test_other_integer_types_holding_8_bit_levels_are_read_as_such(tmp_path):
    np.savez(tmp_path / "int16.npz", x_train=np.arange(2 * 64, dtype=np.int16).reshape(2, 8, 8) % 256)
    data = load_data(f"npz:{tmp_path}/int16.npz", "train", GREY8)
    assert data.images.dtype == torch.uint8 and int(data.images.max()) == 127


def test_a_palette_spec_on_pixel_data_points_to_the_palette_option():
    with pytest.raises(DataError, match="train it with --palette 512"):
        load_data("digits", "train", ImageSpec(channels=1, height=8, width=8, bits=9))
