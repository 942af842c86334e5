"""The cached sampling engine draws exactly the naive engine's images, with the full forward pass's parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from arblocks import build_model, parse_spec
from arblocks.sampling.cached import CachedSampler, SamplingError
from arblocks.sampling.sample import NaiveSampler, sample_images
from arblocks.spec.edit import visit
from tests.helpers import build, spec_dict

SPECS = Path(__file__).parent.parent / "specs"


TIMES = {5: 1, 6: 2, 12: 2, 4: 1}  # PixelCNN++'s 5 and 6 (pushes and pops), PixelSNAIL's 12 blocks of 4


def shrunk(name: str, size: int, **changes):
    """A shipped spec at ``size`` x ``size``, at most 2 repetitions of every repeat, narrow layers (kernels, strides,
    streams, skips, orderings, patterns and heads as shipped)."""
    if name.startswith("pixelsnail"):
        from tests.test_pixelsnail import narrow

        return narrow(SPECS / f"{name}.json", filters=16, size=size)
    data = json.loads((SPECS / f"{name}.json").read_text())
    data["image"].update(height=size, width=size)

    def shrink(node):
        if node.get("type") == "repeat":
            node["times"] = TIMES.get(node["times"], min(node["times"], 2))
        if isinstance(node.get("channels"), int) and node["channels"] > 24:
            node["channels"] = 24  # splits into 8 heads and into 3 sub-pixel groups
        if node.get("type") == "slice" and node["stop"] > 24:
            node["stop"] = 24  # the values' slice of a narrowed key+value projection
        node.pop("qk_channels", None)
        if node.get("heads", 0) > 8:
            node["heads"] = 8  # 24 channels split into 8 heads

    visit(data["body"], shrink)
    visit(data.get("defaults", {}), shrink)
    return parse_spec({**data, **changes})


def exact(model, n=2, conditioning=None, known=None, known_mask=None, seed=3):
    """(images equal, max parameter difference) of the two engines on one generator seed, in float64."""
    naive = NaiveSampler(model).sample(n, conditioning=conditioning, known=known, known_mask=known_mask, generator=torch.Generator().manual_seed(seed))
    sampler = CachedSampler(model)
    cached = sampler.sample(n, conditioning=conditioning, known=known, known_mask=known_mask, generator=torch.Generator().manual_seed(seed))
    return torch.equal(naive, cached), sampler.last_run["max_difference"], sampler.last_run


SHIPPED = sorted(p.stem for p in SPECS.glob("*.json") if "stages" not in json.loads(p.read_text()))  # specs with stages: tests/test_aux_models.py
SIZES = {"pixelcnn_pp": 8, "pixelcnn_pp_classcond": 8, "distaug_pixelcnn_pp_small": 8, "pixelcnn_pp_attention8": 8, "pixelcnn_pp_attention8_small": 8}


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_samples_the_naive_engines_images(name):
    torch.manual_seed(0)
    model = build_model(shrunk(name, SIZES.get(name, 5))).double()
    conditioning = {k: model.inputs[k].example(2, torch.Generator().manual_seed(0)) for k in model.provided_inputs}
    same, difference, run = exact(model, conditioning=conditioning)
    assert same
    assert difference <= 1e-9
    assert not run["fallback"], f"blocks fell back to whole-map recomputation: {run['fallback']}"


def test_completion_and_another_ordering():
    model = build_model(shrunk("lmconv_small", 6, ordering={"type": "s_curve", "transpose": True, "reflect_cols": True})).double()
    known = torch.randint(0, 256, (1, 1, 6, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[:, :2] = True
    same, difference, _ = exact(model, known=known, known_mask=mask)
    assert same and difference <= 1e-9


def test_per_channel_heads_draw_red_green_blue_in_turn_and_temperature_holds():
    model = build([{"type": "masked_conv", "mask": "A", "channels": 12, "kernel_size": 5}, {"type": "relu"},
                   {"type": "masked_conv", "channels": 12}], size=5, bits=4).double()
    a = sample_images(model, 3, engine="naive", temperature=0.7, generator=torch.Generator().manual_seed(5))
    b = sample_images(model, 3, engine="cached", temperature=0.7, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.max() <= 15


def test_a_wrong_incremental_step_is_caught_not_sampled():
    from arblocks.blocks.masked_conv import MaskedConv
    from arblocks.core.block import Block
    from arblocks.core.incremental import Reach

    model = build([{"type": "masked_conv", "mask": "A", "channels": 6}, {"type": "masked_conv", "channels": 6}], size=4, channels=1)
    # a plugin author's mistake: the block claims to read only its own position, but its kernel reaches a row up
    model.layers[1].__class__ = type("Wrong", (MaskedConv,), {"reach": lambda self: Reach(), "forward_at": Block.forward_at})
    with pytest.raises(SamplingError, match="disagrees with the model"):
        sample_images(model, 2, generator=torch.Generator().manual_seed(0))
    assert sample_images(model, 2, engine="naive").shape == (2, 1, 4, 4)


def test_non_finite_parameters_name_the_draw():
    model = build([{"type": "masked_conv", "mask": "A", "channels": 6}], size=4, channels=1)
    with torch.no_grad():
        model.layers[0].conv.conv.weight[0, 0, 0, 0] = float("nan")
    for engine in ("cached", "naive"):
        with pytest.raises(SamplingError, match=r"not finite at draw 0 \(pixel row 0, column 0, channel 0\)"):
            sample_images(model, 2, engine=engine)


def test_a_block_without_incremental_step_falls_back_exactly(tmp_path):
    from arblocks.core.block import Block

    def running_mean(self, x):  # an old plugin's block: a mean over the raster positions so far, no incremental step
        flat = x.flatten(2)
        return (flat.cumsum(-1) / torch.arange(1, flat.shape[-1] + 1, dtype=x.dtype)).view_as(x)

    model = build([{"type": "masked_conv", "mask": "A", "channels": 6}, {"type": "tanh"}], size=4, channels=1).double()
    model.layers[1].__class__ = type("Opaque", (Block,), {"forward": running_mean})
    assert CachedSampler(model).fallback_blocks() == ["/body/1 (tanh)"]
    same, difference, run = exact(model)
    assert same and difference <= 1e-9
    assert set(run["fallback"]) == {"/body/1"}


# -- random compositions (Hypothesis) ---------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.test_causality_property import compositions  # noqa: E402


def assert_engines_agree(model, n=2):
    model = model.double()
    conditioning = {k: model.inputs[k].example(n, torch.Generator().manual_seed(0)) for k in model.provided_inputs}
    same, difference, run = exact(model, n=n, conditioning=conditioning)
    assert same and difference <= 1e-9, difference
    assert not run["fallback"], run["fallback"]


@settings(max_examples=8, deadline=None)
@given(compositions())
def test_random_masked_compositions_sample_exactly(case):
    kwargs, _ = case
    torch.manual_seed(0)
    assert_engines_agree(build(**kwargs))


@st.composite
def two_stream_compositions(draw):
    """PixelCNN++-like bodies: a stream of rows above (u) and one of earlier pixels (ul), gated resnets, a strided
    down-up pair (with causal attention or a transformer block at half the resolution), causal attention with
    positional keys, skip stacks, concatenated auxiliary inputs."""
    channels = draw(st.sampled_from([1, 3]))
    size = draw(st.sampled_from([4, 5]))
    f = 6
    body = [
        {"type": "down_shifted_conv", "in": "x", "out": "u", "kernel_size": [2, 3], "shift_down": True, "channels": f},
        {"type": "down_right_shifted_conv", "in": "x", "out": "ul", "kernel_size": [2, 2], "shift_right": True, "channels": f},
    ]
    pushed = 0
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["u", "ul", "down_up", "attention", "push", "elu", "label"]))
        if kind == "u":
            body.append({"type": "gated_resnet", "in": "u", "conv": "down_shifted"})
        elif kind == "ul":
            body.append({"type": "gated_resnet", "in": "ul", "aux": draw(st.sampled_from(["u", ["u", "grid"]]))})
        elif kind == "down_up" and size % 2 == 0:
            body += [{"type": "down_right_shifted_conv", "in": "ul", "out": "low", "stride": 2},
                     {"type": "gated_resnet", "in": "low"}]
            low_attention = draw(st.sampled_from([None, "causal_attention", "transformer_block"]))
            if low_attention == "causal_attention":  # at half the resolution, keys from the half-size background
                body += [{"type": "concat", "in": ["low", "grid_low"], "out": "low_keys"},
                         {"type": "conv", "in": "low_keys", "out": "low_keys", "channels": f},
                         {"type": "causal_attention", "in": "low", "key": "low_keys", "value": "low", "out": "low_att",
                          "include_current": draw(st.booleans())},
                         {"type": "gated_resnet", "in": "low", "aux": "low_att"}]
            elif low_attention == "transformer_block":
                body.append({"type": "transformer_block", "in": "low", "heads": 2})
            body += [
                     {"type": "down_shifted_conv", "in": "u", "out": "low_u", "stride": 2},
                     {"type": "down_shifted_deconv", "in": "low_u", "out": "up_u"},
                     {"type": "down_right_shifted_deconv", "in": "low", "out": "up"},
                     {"type": "add", "in": ["ul", "up"], "out": "ul"},
                     {"type": "add", "in": ["u", "up_u"], "out": "u"}]
        elif kind == "attention":
            body += [{"type": "concat", "in": ["ul", "grid"], "out": "keys"},
                     {"type": "conv", "in": "keys", "out": "keys", "channels": f},
                     {"type": "causal_attention", "in": "ul", "key": "keys", "value": "ul", "out": "att", "heads": draw(st.sampled_from([1, 2]))},
                     {"type": "gated_resnet", "in": "ul", "aux": "att"}]
        elif kind == "push":
            body.append({"type": "identity", "in": "ul", "out": "ul", "push": "skips"})
            pushed += 1
        elif kind == "elu":
            body.append({"type": "elu", "in": "ul"})
        elif kind == "label":
            body.append({"type": "gated_resnet", "in": "ul", "label": "label"})
    body += [{"type": "gated_resnet", "in": "ul", "aux": {"pop": "skips"}} for _ in range(pushed)]
    head = draw(st.sampled_from([{"type": "logistic_mixture", "components": 2}, {"type": "categorical", "in": "ul"}]))
    head["in"] = "ul"
    inputs = {"grid": {"type": "positional_grid"}, "grid_low": {"type": "positional_grid", "factor": 2},
              "label": {"type": "class_label", "num_classes": 3}}
    inputs = {name: config for name, config in inputs.items() if name == "label" or any(f"'{name}'" in str(block) for block in body)}
    return spec_dict(body, head, channels=channels, size=size, bits=8 if head["type"] == "logistic_mixture" else 3, inputs=inputs)


@settings(max_examples=8, deadline=None)
@given(two_stream_compositions())
def test_random_two_stream_compositions_sample_exactly(data):
    torch.manual_seed(0)
    assert_engines_agree(build_model(parse_spec(data)))


PATTERNS = [{"type": "full"}, {"type": "local_1d", "block": 4}, {"type": "strided", "stride": 3, "part": "local"},
            {"type": "strided", "stride": 3, "part": "stride"}, {"type": "fixed", "stride": 4, "part": "summary"},
            {"type": "union", "patterns": [{"type": "local_1d", "block": 3}, {"type": "strided", "stride": 4, "part": "stride"}]},
            {"type": "local_2d", "query_shape": [2, 2], "memory_flange": [1, 1]}]
ORDERINGS = ["raster", {"type": "raster", "transpose": True}, {"type": "raster", "reflect_rows": True, "reflect_cols": True},
             {"type": "block_raster", "block": [2, 3]}]


@st.composite
def sequence_compositions(draw):
    """Transformers over pixel (1 channel) or sub-pixel (3 channels) sequences: patterns, orderings, position embeddings, norms."""
    channels = draw(st.sampled_from([1, 3]))
    sub = channels == 3
    body = [{"type": "token_embedding", "in": "x", "out": "h", "channels": 8, "subpixels": sub,
             "start": draw(st.sampled_from(["learned", "zeros"])), "tables": draw(st.sampled_from(["shared", "per_channel"])) if sub else "shared"},
            {"type": "position_embedding", "kind": draw(st.sampled_from(["learned", "factorized", "sinusoidal"])), "subpixels": sub}]
    for _ in range(draw(st.integers(1, 3))):
        pattern = draw(st.sampled_from(PATTERNS))
        body.append({"type": "transformer_block", "heads": 2, "subpixels": sub, "norm": draw(st.sampled_from(["pre", "post"])),
                     "pattern": draw(st.sampled_from([pattern, [pattern, {"type": "full"}]]))})
    body.append({"type": "layer_norm", "subpixels": sub})
    head = {"type": "categorical", "projection": "per_subpixel" if sub else "masked"}
    return spec_dict(body, head, channels=channels, size=draw(st.sampled_from([4, 5])), bits=3, ordering=draw(st.sampled_from(ORDERINGS)))


@settings(max_examples=8, deadline=None)
@given(sequence_compositions())
def test_random_sequence_compositions_sample_exactly(data):
    torch.manual_seed(0)
    assert_engines_agree(build_model(parse_spec(data)))


@pytest.mark.slow
def test_cli_engines_write_the_same_grid_and_nan_weights_are_refused(tmp_path, capsys):
    from arblocks.cli import main
    from arblocks.training.checkpoint import load, save_atomic

    run = str(tmp_path / "run")
    tiny = Path(__file__).parent / "specs" / "tiny_digits.json"
    assert main(["train", str(tiny), "--data", "digits", "--out", run, "--steps", "2", "--batch-size", "8", "--no-progress"]) == 0
    for engine in ("cached", "naive"):
        assert main(["sample", f"{run}/checkpoint.pt", "-n", "3", "--seed", "4", "--engine", engine, "--out", str(tmp_path / f"{engine}.png"), "--no-progress"]) == 0
    assert (tmp_path / "cached.png").read_bytes() == (tmp_path / "naive.png").read_bytes()
    state = load(f"{run}/checkpoint.pt")
    for weights in (state["ema"], state["model"]):
        for tensor in weights.values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    save_atomic(state, tmp_path / "nan.pt")
    capsys.readouterr()
    for command in (["sample", str(tmp_path / "nan.pt"), "-n", "2", "--out", str(tmp_path / "x.png"), "--no-progress"],
                    ["eval", str(tmp_path / "nan.pt"), "--data", "digits"]):
        assert main(command) == 2  # refused at load time, naming the tensor
        err = capsys.readouterr().err
        assert "weights hold NaN or infinite values in '" in err and "Traceback" not in err


@pytest.mark.parametrize("ordering", [{"type": "hilbert"}, {"type": "s_curve", "reflect_rows": True}])
def test_attention_with_background_keys_under_another_ordering(ordering):
    """PixelSNAIL-style attention (keys from the features and a positional map) over a locally masked stream, in a
    non-raster order: the mask, the key/value buffers and the draws all follow the order."""
    body = [{"type": "locally_masked_conv", "in": "x", "out": "h", "channels": 6, "mask": "A"},
            {"type": "concat", "in": ["h", "grid"], "out": "keys"},
            {"type": "conv", "in": "keys", "out": "keys", "channels": 6},
            {"type": "causal_attention", "in": "h", "key": "keys", "value": "h", "heads": 2, "out": "att"},
            {"type": "lm_gated_resnet", "in": "h", "aux": "att"}]
    data = spec_dict(body, {"type": "logistic_mixture", "components": 2, "in": "h"}, channels=1, size=4, ordering=ordering,
                     inputs={"grid": {"type": "positional_grid"}})
    torch.manual_seed(0)
    assert_engines_agree(build_model(parse_spec(data)))
