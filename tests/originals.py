"""The shipped specs at the small configurations of the equivalence fixtures in tests/fixtures/ (which
benchmarks/original_fixtures.py writes from the original code), shared by that script and the tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def small_pixelcnn_pp(nr_resnet: int, nr_filters: int, nr_mix: int, channels: int, size: int) -> dict:
    """specs/pixelcnn_pp.json with the original's nr_resnet, nr_filters and nr_logistic_mix, on a size x size image."""
    spec = copy.deepcopy(json.loads((ROOT / "specs" / "pixelcnn_pp.json").read_text()))
    spec["name"] = f"pixelcnn-pp-r{nr_resnet}-f{nr_filters}-k{nr_mix}"
    spec["image"].update(channels=channels, height=size, width=size)
    for defaults in spec["defaults"].values():
        if "channels" in defaults:
            defaults["channels"] = nr_filters
    body = spec["body"]
    # the repeats of gated_resnet pairs: up pass (two scales, then the lowest), down pass (the lowest, then two scales)
    body[5]["body"][0]["times"] = body[6]["times"] = body[9]["times"] = nr_resnet
    body[10]["body"][2]["times"] = nr_resnet + 1
    spec["head"]["components"] = nr_mix
    return spec


def small_lmconv(nr_resnet: int, nr_filters: int, nr_mix: int | None, channels: int, size: int, order: str, bits: int = 8) -> dict:
    """specs/lmconv.json with the original's nr_resnet and nr_filters, ``nr_mix`` logistic components (None: the
    binarized model's two logits per pixel, a categorical head over 1 bit), in ``order`` on a size x size image."""
    spec = copy.deepcopy(json.loads((ROOT / "specs" / "lmconv.json").read_text()))
    spec["name"] = f"lmconv-r{nr_resnet}-f{nr_filters}-{order}"
    spec["image"].update(channels=channels, height=size, width=size, bits=bits)
    spec["ordering"] = {"type": order}
    body = spec["body"]
    body[1]["channels"] = body[3]["body"][1]["channels"] = body[7]["body"][0]["channels"] = nr_filters
    body[3]["body"][0]["times"] = body[4]["times"] = body[6]["times"] = nr_resnet
    body[7]["body"][2]["times"] = nr_resnet + 1
    spec["head"] = {"type": "logistic_mixture", "in": "u", "components": nr_mix, "weight_norm": True} if nr_mix else {"type": "categorical", "in": "u"}
    return spec


def small_image_gpt(n_layer: int, n_embd: int, n_head: int, n_vocab: int, n_px: int) -> dict:
    """specs/igpt_small.json at the original's n_layer, n_embd, n_head, vocabulary (2**bits tokens) and n_px."""
    spec = copy.deepcopy(json.loads((ROOT / "specs" / "igpt_small.json").read_text()))
    spec["name"] = f"igpt-l{n_layer}-d{n_embd}"
    spec["image"].update(height=n_px, width=n_px, bits=n_vocab.bit_length() - 1)
    spec["defaults"]["transformer_block"]["heads"] = n_head
    spec["body"][0]["channels"] = n_embd
    spec["body"][2]["times"] = n_layer
    return spec


def small_pixelsnail(nr_resnet: int, nr_filters: int, attn_rep: int, nr_mix: int, size: int) -> dict:
    """specs/pixelsnail.json at the original's nr_resnet, nr_filters, attention rounds and components (keys of 16)."""
    spec = copy.deepcopy(json.loads((ROOT / "specs" / "pixelsnail.json").read_text()))
    spec["name"] = f"pixelsnail-r{nr_resnet}-f{nr_filters}-a{attn_rep}"
    spec["image"].update(height=size, width=size)
    body = spec["body"]
    body[1]["channels"] = body[2]["channels"] = nr_filters
    rounds = body[4]
    rounds["times"], rounds["body"][0]["times"] = attn_rep, nr_resnet
    inner = rounds["body"]
    inner[3]["channels"] = nr_filters // 2 + 16  # keys (16) and values (F/2)
    inner[5]["stop"] = nr_filters // 2 + 16
    spec["head"]["components"] = nr_mix
    return spec
