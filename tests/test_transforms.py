"""Transforms of integer-level images: their outputs on known arrays, and their place in loading a split."""

import pytest
import torch

from arblocks.data import DataError, ImageData, load_data
from arblocks.data.transforms import Transforms, apply_batch, apply_fixed, area_weights, centre_crop, resize, to_grayscale
from arblocks.spec.models import ImageSpec


def grey(rows):
    return torch.tensor(rows, dtype=torch.uint8)[None, None]


def test_area_resize_by_an_integer_factor_is_the_rounded_block_mean():
    image = grey([[0, 2, 10, 11], [4, 5, 10, 11], [255, 255, 1, 2], [255, 254, 3, 4]])
    # block means 2.75, 10.5, 254.75, 2.5 -> rounded to nearest, halves to even
    assert resize(image, 2).tolist() == [[[[3, 10], [255, 2]]]]


def test_area_resize_weights_partial_pixels_by_the_fraction_covered():
    weights = area_weights(3, 2)  # target pixel 0 covers source [0, 1.5): all of pixel 0 and half of pixel 1
    assert torch.allclose(weights, torch.tensor([[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]], dtype=torch.float64))
    image = grey([[0, 30, 90]])
    assert resize(image, (1, 2)).tolist() == [[[[10, 70]]]]  # (0 * 2 + 30) / 3, (30 + 90 * 2) / 3


def test_area_upscaling_repeats_pixels_and_nearest_picks_the_centre_pixel():
    image = grey([[7, 9], [1, 200]])
    assert resize(image, 4).tolist() == [[[[7, 7, 9, 9], [7, 7, 9, 9], [1, 1, 200, 200], [1, 1, 200, 200]]]]
    big = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4)
    assert resize(big, 2, "nearest").tolist() == [[[[5, 7], [13, 15]]]]  # the pixels under (0.5 + i) * 2


def test_grayscale_is_luma_rounded_half_up():
    rgb = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], dtype=torch.uint8).T.reshape(1, 3, 2, 2)
    # 299 * 255 / 1000 = 76.245, 587 * 255 / 1000 = 149.685, 114 * 255 / 1000 = 29.07, (2990 + 11740 + 3420) / 1000 = 18.15
    assert to_grayscale(rgb).tolist() == [[[[76, 150], [29, 18]]]]


def test_centre_crop_and_bits():
    image = torch.arange(36, dtype=torch.uint8).reshape(1, 1, 6, 6) * 7
    assert centre_crop(image, (2, 4)).tolist() == (image[..., 2:4, 1:5]).tolist()
    data = apply_fixed(ImageData(image, None, 8), Transforms(bits=5), "train")
    assert data.bits == 5 and torch.equal(data.images, image >> 3)
    with pytest.raises(DataError, match="cannot crop 6x6 images to 7x7"):
        centre_crop(image, 7)


def test_the_fixed_transforms_apply_in_their_documented_order():
    images = torch.randint(0, 256, (3, 3, 10, 12), dtype=torch.uint8)
    t = Transforms(grayscale=True, crop=8, resize=4, bits=4)
    expected = resize(centre_crop(to_grayscale(images), 8), 4) >> 4
    assert torch.equal(apply_fixed(ImageData(images, None, 8), t, "test").images, expected)


def test_random_crop_and_flip_draw_per_image_from_the_generator():
    images = torch.arange(2 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6).repeat(8, 1, 1, 1)  # 16 images
    t = Transforms(random_crop=4, hflip=True)
    first = apply_batch(images, t, torch.Generator().manual_seed(3))
    again = apply_batch(images, t, torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == (16, 1, 4, 4)
    windows = {tuple(centre_crop(images[i : i + 1], 4).flatten().tolist()) for i in range(2)}
    seen = set()
    for source, out in zip(images, first):  # each output is some 4x4 window of its own image, maybe mirrored
        found = [(top, left, flip) for top in range(3) for left in range(3) for flip in (False, True)
                 if torch.equal(out, (source[:, top : top + 4, left : left + 4].flip(-1) if flip else source[:, top : top + 4, left : left + 4]))]
        assert found
        seen.update(found)
    assert len(seen) > 4 and any(f for *_, f in seen) and any(not f for *_, f in seen)  # windows and coins vary
    assert windows  # the centre windows exist


def test_a_training_split_with_a_random_crop_keeps_its_full_size_and_the_test_split_is_centre_cropped():
    spec = ImageSpec(channels=1, height=6, width=6, bits=8)
    t = Transforms(random_crop=6)
    train = load_data("digits", "train", spec, transforms=t, crop_later=True)
    assert train.images.shape[-2:] == (8, 8)
    assert load_data("digits", "train", spec, transforms=t).images.shape[-2:] == (6, 6)  # evaluating the train split: the centre
    test = load_data("digits", "test", spec, transforms=t)
    assert test.images.shape[-2:] == (6, 6)
    with pytest.raises(DataError, match="does not give the spec's"):
        load_data("digits", "train", spec, transforms=Transforms(random_crop=5), crop_later=True)


def test_resize_fits_digits_to_a_smaller_spec_and_sizes_parse_from_strings():
    spec = ImageSpec(channels=1, height=4, width=4, bits=8)
    with pytest.raises(DataError, match="--resize"):
        load_data("digits", "test", spec)
    data = load_data("digits", "test", spec, transforms=Transforms(resize="4"))
    assert data.images.shape == (297, 1, 4, 4)
    assert Transforms(resize="16x12").resize == (16, 12) and Transforms(crop=[5]).crop == 5
    with pytest.raises(ValueError):
        Transforms(resize="big")
