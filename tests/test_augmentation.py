"""Distribution Augmentation: transformations, the augmentation section, conditioning, training, eval and sample."""

import json
from pathlib import Path

import pytest
import torch

from arblocks.causality.check import check_model
from arblocks.cli import main
from arblocks.core import augmentation
from arblocks.core.builder import build_model
from arblocks.core.plugins import get_registry
from arblocks.core.validate import parse_spec
from arblocks.spec.errors import BlockError, SpecError
from arblocks.spec.models import ImageSpec

RGB = ImageSpec(channels=3, height=4, width=4, bits=8)
BUILT_IN = {"rotation": 4, "transpose": 2, "reverse": 2, "color_permutation": 6, "jigsaw": 24}


def transformation(name: str, image: ImageSpec = RGB, **config):
    entry = get_registry().transformations[name]
    return entry.cls(entry.cls.Config(**config), image)


def distinct_image(batch: int = 1, image: ImageSpec = RGB) -> torch.Tensor:
    """Images whose sub-pixels all differ, so that a transformation's permutation shows in the values."""
    return torch.arange(image.dims).reshape(1, image.channels, image.height, image.width).repeat(batch, 1, 1, 1)


@pytest.mark.parametrize("name, choices", sorted(BUILT_IN.items()))
def test_every_choice_is_a_distinct_permutation_of_the_sub_pixels_and_choice_0_is_the_identity(name, choices):
    t = transformation(name)
    assert t.choices == choices
    x = distinct_image(choices)
    out = t.apply(x, torch.arange(choices))
    assert torch.equal(out[0], x[0])  # choice 0: the identity
    for k in range(choices):
        assert torch.equal(out[k].flatten().sort().values, x[k].flatten())  # a bijection of the sub-pixels
    assert len({tuple(o.flatten().tolist()) for o in out}) == choices  # every choice a different one


def test_the_built_in_transformations_do_what_they_say():
    x = distinct_image()
    assert torch.equal(transformation("rotation").one(x, 1), torch.rot90(x, 1, (2, 3)))
    assert torch.equal(transformation("transpose").one(x, 1), x.transpose(2, 3))
    pixels = x.flatten(2)  # [1, C, H*W]
    assert torch.equal(transformation("reverse").one(x, 1).flatten(2), pixels.flip(2))  # the pixels backwards, each keeping its channels
    assert torch.equal(transformation("color_permutation").one(x, 5), x[:, [2, 1, 0]])
    jig = transformation("jigsaw").one(x, 23)  # (3, 2, 1, 0): the quadrants in reverse order
    assert torch.equal(jig[..., :2, :2], x[..., 2:, 2:]) and torch.equal(jig[..., 2:, 2:], x[..., :2, :2])


def test_training_draws_the_identity_with_the_chance_it_is_told():
    t = transformation("rotation", probability=0.25)
    draws = t.draw(20000, torch.Generator().manual_seed(0))
    assert abs(float((draws != 0).float().mean()) - 0.25) < 0.02
    assert set(draws.tolist()) == {0, 1, 2, 3}
    assert int(transformation("rotation", probability=0.0).draw(100).max()) == 0
    uniform = transformation("rotation").draw(20000, torch.Generator().manual_seed(1))  # no probability: every choice alike
    assert all(abs(float((uniform == k).float().mean()) - 0.25) < 0.02 for k in range(4))


@pytest.mark.parametrize("name, image, words", [
    ("transpose", ImageSpec(channels=1, height=4, width=6, bits=8), "square"),
    ("rotation", ImageSpec(channels=1, height=4, width=6, bits=8), "square"),
    ("color_permutation", ImageSpec(channels=1, height=4, width=4, bits=8), "3-channel"),
    ("jigsaw", ImageSpec(channels=1, height=5, width=5, bits=8), "even height and width"),
])
def test_a_transformation_that_does_not_apply_says_why(name, image, words):
    with pytest.raises(BlockError, match=words):
        transformation(name, image)


def spec(transformations: list[dict], channels: int = 1, size: int = 4, conditioning="augmentation") -> dict:
    return {"name": "aug", "image": {"channels": channels, "height": size, "width": size, "bits": 4},
            "augmentation": {"transformations": transformations, "conditioning": conditioning},
            "body": [{"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 8 * channels},
                     {"type": "gate", "label": "augmentation"} if conditioning else {"type": "elu"},
                     {"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 8 * channels}],
            "head": {"type": "categorical"}}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_the_model_is_causal_under_every_choice_of_every_built_in_transformation(name):
    torch.manual_seed(0)
    model = build_model(parse_spec(spec([{"type": name}], channels=3)))
    choices = model.inputs["augmentation"]
    for k in range(BUILT_IN[name]):
        choices.example = lambda batch, generator=None, k=k: torch.full((batch, 1), k)  # the check reads this choice
        report = check_model(model, values=())
        assert report.ok, (k, report.summary())
    assert model.inputs["augmentation"].info.channels == BUILT_IN[name]


def test_the_choices_of_several_transformations_index_one_joint_table_and_their_rows_are_summed():
    model = build_model(parse_spec(spec([{"type": "rotation"}, {"type": "transpose"}])))
    gate = model.layers[1]
    assert gate.label.num_embeddings == 4 + 2
    choices = torch.tensor([[2, 1], [0, 0]])
    rows = model.inputs["augmentation"](2, choices, torch.zeros(1))
    assert rows.tolist() == [[2, 5], [0, 4]]
    from arblocks.core.ops import label_vectors

    assert torch.allclose(label_vectors(gate.label, rows)[0], gate.label.weight[2] + gate.label.weight[5])


def test_bad_augmentation_is_reported_at_its_path():
    bad = spec([{"type": "rotaton"}, {"type": "transpose", "probability": 2}, {"type": "color_permutation"}])
    with pytest.raises(SpecError) as error:
        build_model(parse_spec(bad))
    found = {(p.path, p.message.split(";")[0]) for p in error.value.problems}
    assert ("/augmentation/transformations/0/type", "unknown transformation type 'rotaton'") in found
    assert any(path == "/augmentation/transformations/1/probability" for path, _ in found)
    with pytest.raises(SpecError) as error:
        build_model(parse_spec(spec([{"type": "color_permutation"}])))  # a 1-channel image
    assert [p.path for p in error.value.problems] == ["/augmentation/transformations/0/type"]


@pytest.mark.slow
def test_training_evaluation_and_sampling_with_augmentation_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "aug.json"
    data = spec([{"type": "rotation"}, {"type": "transpose"}], size=8)
    path.write_text(json.dumps(data))
    run = tmp_path / "run"
    assert main(["train", str(path), "--data", "digits", "--out", str(run), "--steps", "3", "--batch-size", "8", "--eval-every", "3", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run / "checkpoint.pt"), "--data", "digits", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run / "checkpoint.pt"), "--data", "digits", "--json", "--augment", "rotation=2"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["augment"] == {"rotation": 2} and rotated["bits_per_dim"] != plain["bits_per_dim"]
    # the figure under rotation=2 is the model's likelihood of the rotated images, told so
    from arblocks.data import load_data
    from arblocks.training.checkpoint import load_model

    model, _ = load_model(run / "checkpoint.pt")
    test = load_data("digits", "test", model.image)
    turned = torch.rot90(test.images, 2, (2, 3))
    with torch.no_grad():
        nats = model.nll(turned, augmentation=torch.tensor([[2, 0]] * len(turned))).double().mean()
    assert float(nats) == pytest.approx(rotated["nats_per_image"], rel=1e-5)
    assert main(["sample", str(run / "checkpoint.pt"), "-n", "2", "--out", str(tmp_path / "s.png"), "--augment", "transpose=1", "--no-progress"]) == 0
    for bad in (["--augment", "rotation=4"], ["--augment", "jigsaw=1"], ["--augment", "rotation"]):
        assert main(["sample", str(run / "checkpoint.pt"), "-n", "2", "--out", str(tmp_path / "s.png"), *bad]) == 2, bad
    assert "rotation has choices 0..3" in capsys.readouterr().err


def test_training_applies_the_drawn_transformations_and_tells_the_model(monkeypatch, tmp_path):
    """A training step's images are the data under the step's draws, and the conditioning input carries the same draws."""
    from arblocks.training import loop as training

    seen = []
    original = augmentation.apply

    def spy(model, x, choices):
        out = original(model, x, choices)
        seen.append((x.clone(), choices.clone(), out.clone()))
        return out

    monkeypatch.setattr(augmentation, "apply", spy)
    calls = []
    real_forward = training.Objective.forward

    def record(self, x, **cond):
        calls.append((x.clone(), {k: v.clone() for k, v in cond.items()}))
        return real_forward(self, x, **cond)

    monkeypatch.setattr(training.Objective, "forward", record)
    data = spec([{"type": "rotation", "probability": 1.0}], size=8)
    training.train(parse_spec(data), "digits", tmp_path / "run", training.TrainConfig(steps=2, batch_size=8, eval_every=100, init=False), progress=False)
    step_inputs = [c for c in calls if c[0].shape[0] == 8]
    assert len(step_inputs) == 2
    for (x, choices, out), (fed, cond) in zip(seen[-2:], step_inputs):
        assert bool((choices != 0).all())  # probability 1: never the identity
        assert torch.equal(fed, out) and torch.equal(cond["augmentation"], choices)
        assert torch.equal(out[0], torch.rot90(x[0], int(choices[0, 0]), (1, 2)))


def test_augmentation_without_conditioning_transforms_without_telling(tmp_path):
    data = spec([{"type": "transpose"}], conditioning=None)
    model = build_model(parse_spec(data))
    assert model.provided_inputs == [] and [t.config.type for t in model.transformations] == ["transpose"]


def test_specs_without_augmentation_hash_as_before():
    from arblocks.core.validate import load_spec
    from arblocks.training.checkpoint import spec_hash

    spec_ = load_spec(Path(__file__).parent / "specs/tiny_digits.json")
    assert "augmentation" not in json.loads(json.dumps(spec_.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert spec_hash(spec_) == spec_hash(spec_)


def test_the_kit_passes_the_built_in_transformations_and_catches_one_that_loses_pixels(make_registry):
    from typing import Literal

    from arblocks import hookimpl
    from arblocks.core.augmentation import Transformation, TransformationConfig
    from arblocks.testing import check_plugin, check_transformation

    for name in BUILT_IN:
        report = check_transformation(name)
        assert report.ok, report.summary()

    class ShiftConfig(TransformationConfig):
        type: Literal["shift_down"] = "shift_down"

    class Shift(Transformation):
        Config = ShiftConfig

        def __init__(self, config, image):
            super().__init__(config, image)
            self.choices = 2

        def one(self, x, k):
            return torch.cat([x[:, :, :1], x[:, :, :-1]], dim=2)  # the last row is lost: not a bijection

    class Plugin:
        @hookimpl
        def arblocks_register_transformations(self, register):
            register(Shift)

    report = check_plugin("shifts", registry=make_registry(("shifts", Plugin())))
    assert not report.ok and all("not a bijection" in f.detail for f in report.failures()), report.summary()
