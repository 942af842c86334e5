"""The model card (README.md) of an exported folder: what the model is, what it was trained on, its bits/dim and how
it was measured, and what the causality check proved, with a YAML header the Hugging Face Hub reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.plugins import arblocks_version


def model_card(model, state: dict[str, Any], run: dict[str, Any], weights: str, checkpoint: Path) -> str:
    spec = model.spec
    image = spec.image
    data, test = run.get("data"), run.get("test_data")
    header = ["---", "library_name: arblocks", "tags:", "- arblocks", "- autoregressive", "- image-generation",
              *([f"datasets:\n- {data}"] if isinstance(data, str) and data.isidentifier() else []), "---", ""]
    logged = run.get("test_bits_per_dim")
    config = run.get("config") or {}
    if logged:
        images = f"the first {config['eval_limit']} images" if config.get("eval_limit") else "every image"
        bpd = (f"**{logged['bits_per_dim']:.4f} bits/dim** on `{test or data}` (its test split), logged by `arblocks train` at "
               f"step {logged['step']} with the {logged['weights']} weights: the exact discrete likelihood, -log2 p(x) summed over "
               f"{images} of the split, divided by their dimensions ({image.channels}x{image.height}x{image.width} each).")
    else:
        bpd = "Not measured by the run that made these weights."
    record = state.get("causality_record")
    if isinstance(record, dict) and record.get("passed"):
        causality = (f"The run's check passed (`arblocks check` version {record.get('check_version')}, arblocks "
                     f"{record.get('arblocks')}, plugins {json.dumps(record.get('plugins') or {})}, value walk in "
                     f"{', '.join(record.get('precisions') or [])}). `arblocks eval` and `sample` trust this record when the "
                     "installed code matches it, and run the check again otherwise (or with `--recheck`).")
    else:
        causality = "No record of a passed check: `arblocks eval` and `sample` run the causality check when they load this folder."
    lines = [
        *header,
        f"# {spec.name}",
        "",
        "An autoregressive image model composed by arblocks from the declarative spec in `spec.json`.",
        "",
        "## Architecture",
        "",
        f"- image: {image.channels}x{image.height}x{image.width}, {image.bits} bits per sub-pixel"
        + (f", ordering `{spec.ordering.type}`" if getattr(spec, "ordering", None) is not None else ""),
        f"- trainable parameters: {model.num_parameters():,}",
        "- blocks: `arblocks build spec.json` prints every block with its output shape, parameters and causal state",
        "",
        "## Weights",
        "",
        f"- `model.safetensors`: the {'EMA (exponential moving average)' if weights == 'ema' else 'raw (last step)'} weights of step "
        f"{state.get('step', 0)}, exported from `{checkpoint.name}` by arblocks {arblocks_version() or 'unknown'}",
        "",
        "## Data",
        "",
        f"- training: `{data}`" if data else "- training: not recorded (the weights were not saved by `arblocks train`)",
        *([f"- test: `{test}`"] if test else []),
        *([f"- training steps: {config.get('steps')}, batch size {config.get('batch_size')}, learning rate {config.get('lr')}"]
          if config.get("steps") else []),
        "",
        "## Bits per dimension",
        "",
        bpd,
        "",
        f"Measure it again: `arblocks eval THIS_FOLDER --data {test or data or 'DATA'} --split test`.",
        "",
        "## Causality",
        "",
        causality,
        "",
        "## Use",
        "",
        "```python",
        "import arblocks",
        "model = arblocks.from_pretrained(\"THIS_FOLDER_OR_HUB_ID\")",
        "```",
        "",
        "or `arblocks sample THIS_FOLDER_OR_HUB_ID --out samples.png`. Loading reads the spec (validated; nothing in it is "
        "executed) and safetensors weights only.",
        "",
    ]
    return "\n".join(lines)
