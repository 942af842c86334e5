"""Views, the registered kind that models of several stages will model first."""

from typing import ClassVar, Literal

import pytest
import torch

from arblocks import ImageSpec, hookimpl
from arblocks.core.plugins import get_registry
from arblocks.spec.errors import BlockError
from arblocks.staged.views import View, ViewConfig

RGB = ImageSpec(channels=3, height=8, width=8, bits=8)


def view(name: str, image: ImageSpec = RGB, **config):
    entry = get_registry().views[name]
    return entry.cls(entry.cls.Config(**config), image)


def test_the_built_in_views_are_registered_like_every_other_kind():
    assert {"identity", "grayscale", "downsample"} <= set(get_registry().views)


def test_grayscale_is_the_rounded_luma_in_few_bits():
    gray = view("grayscale", bits=4)
    assert gray.output == ImageSpec(channels=1, height=8, width=8, bits=4)
    x = torch.zeros(1, 3, 8, 8, dtype=torch.long)
    x[0, :, 0, 0] = torch.tensor([255, 255, 255])  # white
    x[0, :, 0, 1] = torch.tensor([255, 0, 0])  # red: 0.299 of white
    x[0, :, 0, 2] = torch.tensor([0, 255, 0])  # green: 0.587
    x[0, :, 0, 3] = torch.tensor([0, 0, 255])  # blue: 0.114
    a = gray(x)
    assert a.dtype == torch.long and a.shape == (1, 1, 8, 8)
    assert a[0, 0, 0, :4].tolist() == [15, round(0.299 * 15), round(0.587 * 15), round(0.114 * 15)]  # 15, 4, 9, 2
    assert int(a[0, 0, 1:].max()) == 0


def test_grayscale_agrees_with_floating_point_luma_on_random_images():
    gray = view("grayscale", bits=5)
    x = torch.randint(0, 256, (4, 3, 8, 8))
    luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]) / 255 * 31
    assert (gray(x)[:, 0] - luma).abs().max() <= 0.5 + 1e-9


def test_downsample_averages_blocks_and_rounds_to_the_images_levels():
    down = view("downsample", factor=2)
    assert down.output == ImageSpec(channels=3, height=4, width=4, bits=8)
    x = torch.randint(0, 256, (2, 3, 8, 8))
    mean = x.double().reshape(2, 3, 4, 2, 4, 2).mean((3, 5))
    a = down(x)
    assert a.shape == (2, 3, 4, 4) and (a - mean).abs().max() <= 0.5
    assert view("downsample", factor=8)(torch.full((1, 3, 8, 8), 255)).tolist() == [[[[255]], [[255]], [[255]]]]
    # a pyramid: 8x8 -> 4x4 -> 2x2 composes like 8x8 -> 2x2 up to one rounding
    two = view("downsample", image=down.output, factor=2)(a)
    assert (two - view("downsample", factor=4)(x)).abs().max() <= 1


def test_identity_is_the_image():
    x = torch.randint(0, 256, (1, 3, 8, 8))
    assert view("identity").output == RGB and torch.equal(view("identity")(x), x)


def test_a_view_that_does_not_fit_the_image_says_which_field():
    with pytest.raises(BlockError, match="3-channel") as e:
        view("grayscale", image=RGB.model_copy(update={"channels": 1}))
    assert e.value.field == "type"
    with pytest.raises(BlockError, match="does not divide the image's 8x8") as e:
        view("downsample", factor=3)
    assert e.value.field == "factor"


def test_views_are_exact_integer_functions_whatever_the_batch():
    x = torch.randint(0, 256, (5, 3, 8, 8))
    for name, config in (("grayscale", {}), ("downsample", {"factor": 4})):
        v = view(name, **config)
        assert torch.equal(v(x), torch.cat([v(x[i : i + 1]) for i in range(5)]))


def test_a_plugin_adds_a_view(make_registry):
    class InvertConfig(ViewConfig):
        """The negative image."""

        type: Literal["invert"] = "invert"

    class Invert(View):
        Config = InvertConfig
        examples: ClassVar[list[dict]] = [{}]

        def __init__(self, config, image):
            super().__init__(config, image)
            self.output = image

        def __call__(self, x):
            return self.image.levels - 1 - x

    class Plugin:
        @hookimpl
        def arblocks_register_views(self, register):
            register(Invert)

    registry = make_registry(("negatives", Plugin()))
    entry = registry.views["invert"]
    assert entry.plugin == "negatives" and entry.description == "The negative image."
    assert int(entry.cls(InvertConfig(), RGB)(torch.zeros(1, 3, 8, 8, dtype=torch.long)).min()) == 255


def test_the_kit_passes_the_built_in_views_and_a_plugin_view(make_registry):
    from arblocks.testing import check_plugin, check_view

    for name in ("identity", "grayscale", "downsample"):
        report = check_view(name)
        assert report.ok, report.summary()
    assert len(check_view("downsample").findings) >= 4  # every image it fits: 8x8 by 2 and 4, 12x6 by 2, 4x4 by 2 and 4

    class MirrorConfig(ViewConfig):
        type: Literal["mirror"] = "mirror"

    class Mirror(View):
        Config = MirrorConfig

        def __init__(self, config, image):
            super().__init__(config, image)
            self.output = image

        def __call__(self, x):
            return x.flip(-1)

        def known_pixels(self, mask):
            return mask.flip(-1)

    class Plugin:
        @hookimpl
        def arblocks_register_views(self, register):
            register(Mirror)

    report = check_plugin("mirrors", registry=make_registry(("mirrors", Plugin())))
    assert report.ok and {f.block for f in report.findings} == {"mirror"}, report.summary()


@pytest.mark.parametrize("flaw, words", [
    ("claims too much", "a pixel known_pixels calls known changed"),
    ("floats", "integer levels"),
    ("wrong size", "its declared output is"),
    ("batch", "depends on its batch"),
])
def test_the_kit_catches_a_broken_view(make_registry, flaw, words):
    from arblocks.testing import check_view

    class BrokenConfig(ViewConfig):
        type: Literal["broken"] = "broken"

    class Broken(View):
        Config = BrokenConfig

        def __init__(self, config, image):
            super().__init__(config, image)
            self.output = image.model_copy(update={"height": image.height // 2, "width": image.width // 2})

        def __call__(self, x):
            if flaw == "wrong size":
                return x
            pooled = x[..., ::2, ::2] + x[..., 1::2, 1::2] // 2  # reads two pixels of each 2x2 block
            if flaw == "batch":
                pooled = pooled + (x.shape[0] > 1)
            return pooled.clamp(max=self.image.levels - 1).float() if flaw == "floats" else pooled.clamp(max=self.image.levels - 1)

        def known_pixels(self, mask):
            return mask[::2, ::2]  # wrong: the level also reads pixel (2i + 1, 2j + 1)

    class Plugin:
        @hookimpl
        def arblocks_register_views(self, register):
            register(Broken)

    report = check_view("broken", make_registry(("broken", Plugin())))
    assert not report.ok and any(words in f.detail for f in report.failures()), report.summary()
