"""Image Transformer and Sparse Transformer as specs: sub-pixel sequences with local and strided attention."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from arblocks import SpecError, build_model, load_spec, parse_spec
from arblocks.causality.check import check_model
from arblocks.cli import main
from arblocks.sampling.sample import NaiveSampler
from tests.helpers import fit

SPECS = Path(__file__).parent.parent / "specs"


def small(name: str, size: int = 5, **pattern) -> dict:
    data = json.loads((SPECS / f"{name}.json").read_text())
    data["image"].update(height=size, width=size)
    block = data["defaults"]["transformer_block"]
    if pattern:
        targets = block["pattern"] if isinstance(block["pattern"], list) else [block["pattern"]]
        for target in targets:
            target.update(pattern)
    return data


@pytest.mark.parametrize(
    ("name", "count", "layers"),
    [("image_transformer", 38_328_576, 12), ("sparse_transformer", 59_196_928, 128)],
)
def test_full_configs_match_the_original_parameter_counts(name, count, layers):
    model = build_model(load_spec(SPECS / f"{name}.json"))
    assert model.num_parameters() == count
    assert sum(s.type == "transformer_block" for s in model.steps) == layers


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "pattern"),
    [("image_transformer_small", {"block": 16}), ("sparse_transformer_small", {"stride": 15})],
)
@pytest.mark.parametrize("ordering", ["raster", {"type": "raster", "transpose": True, "reflect_rows": True}])
def test_small_configs_are_causal_over_sub_pixels_with_full_coverage(name, pattern, ordering):
    data = small(name, **pattern)
    data["ordering"] = ordering
    report = check_model(build_model(parse_spec(data)))
    assert report.ok, report.summary()
    assert report.modes["train"].method == "perturbation"
    assert report.min_coverage == 1.0


def test_a_sub_pixel_sees_the_earlier_channels_of_its_own_pixel_and_nothing_after():
    model = build_model(parse_spec(small("sparse_transformer_small", stride=15))).eval()
    x = torch.randint(0, 256, (1, 3, 5, 5))
    y = x.clone()
    y[0, 1, 2, 3] = (y[0, 1, 2, 3] + 9) % 256  # the green of pixel (2, 3)
    with torch.no_grad():
        changed = (model(x) != model(y)).any(2)[0]  # [C, H, W]
    assert not changed[:, :2].any() and not changed[:, 2, :3].any()  # earlier pixels
    assert not changed[:2, 2, 3].any() and changed[2, 2, 3]  # red and green of the pixel itself: no; blue: yes


def test_a_pixel_sequence_block_on_a_sub_pixel_stream_is_refused():
    data = small("image_transformer_small")
    data["defaults"]["transformer_block"]["subpixels"] = False
    with pytest.raises(SpecError, match="make it a sub-pixel sequence"):
        build_model(parse_spec(data))


@pytest.mark.parametrize("name", ["image_transformer_small", "sparse_transformer_small"])
def test_small_configs_learn_and_sample(name):
    torch.manual_seed(0)
    model = build_model(parse_spec(small(name, size=4, **({"block": 12} if "image" in name else {"stride": 12}))))
    x = torch.randint(0, 256, (4, 3, 1, 4)).expand(4, 3, 4, 4)  # repeated rows: learnable
    first, last = fit(model, x, steps=25, lr=3e-3)
    assert last < 0.7 * first
    images = NaiveSampler(model).sample(2, generator=torch.Generator().manual_seed(1))
    assert images.shape == (2, 3, 4, 4) and images.min() >= 0 and images.max() < 256


@pytest.mark.slow
@pytest.mark.parametrize(("name", "pattern"), [("image_transformer_small", {"block": 15}), ("sparse_transformer_small", {"stride": 15})])
def test_cli_trains_evaluates_and_samples_a_sub_pixel_transformer(tmp_path, capsys, name, pattern):
    data = small(name, size=5, **pattern)
    spec = tmp_path / "model.json"
    spec.write_text(json.dumps(data))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", x_train=rng.integers(0, 256, (64, 5, 5, 3), dtype=np.uint8), x_test=rng.integers(0, 256, (16, 5, 5, 3), dtype=np.uint8))
    run = str(tmp_path / "run")
    source = f"npz:{tmp_path / 'rgb.npz'}"
    assert main(["train", str(spec), "--data", source, "--out", run, "--steps", "3", "--batch-size", "8", "--no-progress"]) == 0
    assert main(["eval", f"{run}/checkpoint.pt", "--data", source, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 6 < report["bits_per_dim"] < 10  # near 8 bits/dim for uniform noise after 3 steps
    assert main(["sample", f"{run}/checkpoint.pt", "-n", "2", "--out", str(tmp_path / "grid.png"), "--no-progress"]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_recomputation_gives_the_same_loss_and_gradients_with_dropout():
    data = small("sparse_transformer_small", size=4, stride=12)
    data["defaults"]["transformer_block"]["dropout"] = 0.3
    x = torch.randint(0, 256, (2, 3, 4, 4))
    grads = []
    for recompute in (False, True):
        data["defaults"]["transformer_block"]["recompute"] = recompute
        torch.manual_seed(0)
        model = build_model(parse_spec(data)).train()
        torch.manual_seed(1)
        loss = model.nll(x).mean()
        loss.backward()
        grads.append((loss.detach(), [p.grad for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = grads
    assert torch.equal(loss_a, loss_b)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_a, grads_b))


@pytest.mark.slow
def test_image_transformer_2d_local_attention_in_block_raster_order_is_causal():
    """The paper's 2D variant: query blocks generated one after another (block_raster), local 2D attention over them."""
    data = small("image_transformer_small", size=6)
    data["ordering"] = {"type": "block_raster", "block": [2, 3]}
    data["defaults"]["transformer_block"]["pattern"] = {"type": "local_2d", "query_shape": [2, 3], "memory_flange": [2, 3]}
    report = check_model(build_model(parse_spec(data)))
    assert report.ok, report.summary()
    assert report.min_coverage == 1.0
    assert report.ordering == "block_raster"


def test_block_raster_generates_each_block_before_the_next():
    from arblocks.core.ordering import BlockRaster, BlockRasterConfig

    rank = BlockRaster(BlockRasterConfig(block=(2, 3))).rank(4, 5)
    assert rank.tolist() == [[0, 1, 2, 6, 7], [3, 4, 5, 8, 9], [10, 11, 12, 16, 17], [13, 14, 15, 18, 19]]
