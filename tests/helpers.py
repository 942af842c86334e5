"""Small helpers shared by the tests."""

from __future__ import annotations

from typing import Any

from arblocks import build_model, parse_spec
from arblocks.core.registry import Registry


def spec_dict(body: list[dict], head: dict | None = None, channels: int = 3, size: int = 6, bits: int = 8, **extra: Any) -> dict:
    return {
        "name": "test",
        "image": {"channels": channels, "height": size, "width": size, "bits": bits},
        "body": body,
        "head": head or {"type": "categorical"},
        **extra,
    }


def fit(model, x, steps: int, lr: float) -> tuple[float, float]:
    """Adam on the bits/dim of one batch ``x``: (bits/dim before, bits/dim after ``steps`` steps)."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = model.bits_per_dim(x).item()
    for _ in range(steps):
        opt.zero_grad()
        model.bits_per_dim(x).backward()
        opt.step()
    return first, model.bits_per_dim(x).item()


def run_with_leaky_plugin_installed(tmp_path, size: int, *args: str):
    """Run ``python -m arblocks ARGS[0] SPEC ARGS[1:]`` with tests/leaky_blocks.py installed as an entry point, on a spec
    that puts its leaking ``peek_below`` block after a mask-A convolution."""
    import json

    spec = {"name": "peek", "image": {"channels": 1, "height": size, "width": size, "bits": 8},
            "body": [{"type": "masked_conv", "mask": "A", "channels": 4}, {"type": "peek_below"}], "head": {"type": "categorical"}}
    path = tmp_path / "peek.json"
    path.write_text(json.dumps(spec))
    return run_cli_with_leaky_plugin(tmp_path, args[0], str(path), *args[1:])


def run_cli_with_leaky_plugin(tmp_path, *args: str):
    """``python -m arblocks ARGS`` with tests/leaky_blocks.py installed as an entry point (a fake dist-info on PYTHONPATH)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parent.parent
    info = tmp_path / "leakyplug-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leakyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[arblocks]\nleaky = tests.leaky_blocks:plugin\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}"}
    return subprocess.run([sys.executable, "-m", "arblocks", *args], capture_output=True, text=True, cwd=root, env=env)


def build(body: list[dict], registry: Registry | None = None, static_causality: bool = True, **kwargs):
    spec = parse_spec(spec_dict(body, **kwargs), registry=registry)
    return build_model(spec, registry=registry, static_causality=static_causality)


def problems_of(excinfo) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in excinfo.value.problems]


def shrunk_spec(path, divide: int = 16, times: dict[int, int] | None = None, size: int | None = 8, registry: Registry | None = None):
    """A shipped spec with every `channels` divided and `repeat` counts mapped by ``times``, for fast tests of its structure.

    Kernels, strides, streams, skips and heads stay as they are, so the receptive field's geometry and the
    causal structure are the shipped spec's.
    """
    import json
    from pathlib import Path

    from arblocks.spec.edit import visit

    data = json.loads(Path(path).read_text())

    def shrink(node):
        if isinstance(node.get("channels"), int):
            node["channels"] = max(1, node["channels"] // divide)
        if node.get("type") == "repeat" and times:
            node["times"] = times.get(node["times"], node["times"])

    visit(data["body"], shrink)
    visit(data.get("defaults", {}), shrink)
    if size is not None:
        data["image"].update(height=size, width=size)
    return parse_spec(data, registry=registry)
