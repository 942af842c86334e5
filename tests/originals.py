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
