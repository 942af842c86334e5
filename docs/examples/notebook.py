# %% [markdown]
# # A hybrid from a spec, trained from Python
#
# This notebook (a script in the percent format: open it in Jupyter with jupytext, in VS Code, or run it with
# `python docs/examples/notebook.py`) builds a new hybrid from a spec, checks that it is causal, trains it on the
# embedded 8x8 digits, evaluates it, draws samples, completes half an image, and plots the learning curve.
# Nothing is downloaded. The test suite runs it (with fewer steps), so it stays true.

# %%
import os
from pathlib import Path
from tempfile import mkdtemp

import torch

import arblocks
from arblocks.causality import check_spec
from arblocks.sampling import save_grid
from arblocks.training import SaveSamples

STEPS = int(os.environ.get("ARBLOCKS_EXAMPLE_STEPS", "300"))  # a few hundred: about a minute on two CPU cores
RUN = Path(os.environ.get("ARBLOCKS_EXAMPLE_DIR") or mkdtemp(prefix="arblocks-notebook-")) / "run"

# %% [markdown]
# ## 1. The spec
#
# Gated PixelCNN stacks (a vertical stack that sees the rows above, a horizontal one that sees the pixels to the
# left) with a causal attention block over the raw image after them, and a softmax over the 16 grey levels. The spec
# is a plain dict here; a JSON file is the same with quotes.

# %%
spec = arblocks.parse_spec({
    "name": "digits-hybrid",
    "image": {"channels": 1, "height": 8, "width": 8, "bits": 4},
    "inputs": {"background": {"type": "positional_grid"}},
    "body": [
        {"type": "down_shifted_conv", "in": "x", "out": "v_pre", "channels": 32, "kernel_size": [2, 3], "shift_down": True},
        {"type": "gate", "in": "v_pre", "out": "v"},
        {"type": "conv", "in": "v_pre", "out": "link", "channels": 32},
        {"type": "down_right_shifted_conv", "in": "x", "out": "h_pre", "channels": 32, "kernel_size": [1, 2], "shift_right": True},
        {"type": "add", "in": ["h_pre", "link"], "out": "h_pre"},
        {"type": "gate", "in": "h_pre", "out": "h_gated"},
        {"type": "conv", "in": "h_gated", "out": "h", "channels": 16},
        {"type": "repeat", "times": 2, "body": [
            {"type": "down_shifted_conv", "in": "v", "out": "v_pre", "channels": 32, "kernel_size": [2, 3]},
            {"type": "gate", "in": "v_pre", "out": "v"},
            {"type": "conv", "in": "v_pre", "out": "link", "channels": 32},
            {"type": "down_right_shifted_conv", "in": "h", "out": "h_pre", "channels": 32, "kernel_size": [1, 2]},
            {"type": "add", "in": ["h_pre", "link"], "out": "h_pre"},
            {"type": "gate", "in": "h_pre", "out": "h_gated"},
            {"type": "conv", "in": "h_gated", "out": "h_res", "channels": 16},
            {"type": "add", "in": ["h", "h_res"], "out": "h"},
        ]},
        {"type": "concat", "in": ["x", "h", "background"], "out": "kv_in"},
        {"type": "conv", "in": "kv_in", "out": "kv", "channels": 24},
        {"type": "slice", "in": "kv", "out": "key", "start": 0, "stop": 8},
        {"type": "slice", "in": "kv", "out": "value", "start": 8, "stop": 24},
        {"type": "concat", "in": ["h", "background"], "out": "q_in"},
        {"type": "conv", "in": "q_in", "out": "query", "channels": 8},
        {"type": "causal_attention", "in": "query", "key": "key", "value": "value", "out": "att"},
        {"type": "conv", "in": "att", "out": "att", "channels": 16},
        {"type": "add", "in": ["h", "att"], "out": "h"},
        {"type": "elu", "in": "h"},
    ],
    "head": {"type": "categorical", "in": "h"},
})

# %% [markdown]
# ## 2. Build it and check it
#
# The check computes every output's dependencies from float64 gradients and walks value perturbations of future
# pixels: no output may depend on a pixel at or after its own.

# %%
torch.manual_seed(0)  # the seed `fit` (and `arblocks train`) builds its model after: this model starts as the command's
model = arblocks.build_model(spec)
report = check_spec(spec, full=model)
print(f"{model.num_parameters():,} parameters; causal: {report.ok}")
assert report.ok

# %% [markdown]
# ## 3. Train it
#
# `arblocks.fit` is the loop of `arblocks train`: EMA weights, checkpoints, metrics.csv, exact resume. The model is
# trained in place; `result.model` holds the averaged weights. A callback writes a sample grid at each evaluation.

# %%
samples = SaveSamples(count=16)
result = arblocks.fit(model, "digits", RUN, steps=STEPS, batch_size=32, lr=2e-3, eval_every=max(STEPS // 3, 1), log_every=10,
                      checkpoint_every=STEPS, callbacks=[samples], progress=False)
print(f"step {result.step}: train {result.train_bits_per_dim:.3f} bits/dim, test {result.test_bits_per_dim:.3f} bits/dim")
print("sample grids:", [p.name for p in samples.written])

# %% [markdown]
# ## 4. Evaluate
#
# Exact bits per dimension over the whole test split (the 297 held-out digits), with the averaged weights.

# %%
from arblocks.training import evaluate  # noqa: E402

test = arblocks.load_data("digits", "test", spec.image)
bits_per_dim, nats_per_image = evaluate(result.model, test, batch_size=297, device="cpu")
print(f"test: {bits_per_dim:.4f} bits/dim, {nats_per_image:.2f} nats per image")
assert abs(bits_per_dim - result.test_bits_per_dim) < 1e-9  # the run's last evaluation was this one

# %% [markdown]
# ## 5. Sample, and complete an image
#
# One seed, one grid. Completion keeps the top half of test digits and samples the rest.

# %%
drawn = result.model.sample(16, generator=torch.Generator().manual_seed(0))
save_grid(drawn, RUN / "samples.png", spec.image.levels)

known = test.images[:8]
mask = torch.zeros(8, 8, dtype=torch.bool)
mask[:4] = True  # the first four rows are given
completed = result.model.sample(8, known=known, known_mask=mask, generator=torch.Generator().manual_seed(0))
assert torch.equal(completed[:, :, :4], known[:, :, :4])
save_grid(torch.cat([known, completed]), RUN / "completions.png", spec.image.levels)
print("wrote", RUN / "samples.png", "and", RUN / "completions.png", "(originals above, completions below)")

# %% [markdown]
# ## 6. The learning curve
#
# metrics.csv has a train row every 10 steps (the steps' own weights) and a test row per evaluation (the averages).

# %%
import csv  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # in Jupyter, drop this line to see the figure inline
import matplotlib.pyplot as plt  # noqa: E402

rows = list(csv.DictReader((RUN / "metrics.csv").open()))
fig, ax = plt.subplots(figsize=(6, 4))
for split in ("train", "test"):
    points = [(int(r["step"]), float(r["bits_per_dim"])) for r in rows if r["split"] == split]
    ax.plot(*zip(*points), marker="o" if split == "test" else None, label=split)
ax.set_xlabel("step")
ax.set_ylabel("bits per dimension")
ax.legend()
fig.savefig(RUN / "learning_curve.png")
print("wrote", RUN / "learning_curve.png")

# %% [markdown]
# ## 7. Share it with the command line
#
# The run folder is what `arblocks train` writes, so the commands take it as it is:
#
# ```bash
# arblocks eval RUN/checkpoint.pt
# arblocks sample RUN/checkpoint.pt -n 64 --out grid.png
# ```
#
# and a model built or changed in Python becomes such a checkpoint with `arblocks.save_checkpoint(model, path)`.

# %%
path = arblocks.save_checkpoint(result.model, RUN.parent / "averaged")
reloaded, info = arblocks.load_checkpoint(path)
assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), result.model.state_dict().values()))
print("saved", path)
