"""The ``arblocks`` command. Thin: every verb calls a library function.

Exit status: 0 success, 1 a causality check failed (or an internal error), 2 bad input (spec, usage, plugins).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from .core.registry import KINDS
from .spec.errors import ArblocksError, Problem, SpecError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(ArblocksError):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 as well, but through our own message format
        raise UsageError(f"{self.prog}: {message}")


def precisions_for(precision: str) -> tuple[str, ...]:
    """The precisions the check proves for a command run in ``precision`` (imported when needed: torch is heavy)."""
    from .causality.precision import precisions_for as precisions

    return precisions(precision)


CHECKPOINT_HELP = ("checkpoint.pt of a run, a folder written by `arblocks export`, or a Hugging Face Hub id (owner/name) of "
                   "such a folder")
RECHECK_HELP = ("check causality even when the checkpoint records a passed check of its spec by this arblocks and these plugins "
                "(such a record is trusted by default, and the check skipped with a note)")
PRECISION_HELP = ("the value walk also runs on the model's float32 weights (always) and under this autocast (bf16 or fp16), "
                  "so that a block whose low-precision path differs is proven as it runs (default fp32: float64 and float32)")
DATA_HELP = ("data source: digits (embedded), a named dataset (cifar10, mnist, fashion_mnist, binarized_mnist, svhn, celeba32, celeba64, "
             "imagenet32, imagenet64: from the data cache, downloaded when missing), hf:NAME[:CONFIG], torchvision:NAME, npz:PATH, folder:PATH, "
             "or NAME:FOLDER for a dataset's files in a folder (docs/training.md)")
AUGMENT_HELP = ("Distribution Augmentation: a transformation choice, e.g. --augment rotation=1 (repeatable; the others stay at 0, "
                "the identity, which is the default)")


def parse_augment(values: list[str], model) -> dict[str, int]:
    """``--augment NAME=K`` flags as {name: choice}, checked against the model's transformations (exit 2 otherwise)."""
    from .core.augmentation import AugmentationError, chosen

    wanted = {}
    for value in values:
        name, _, choice = value.partition("=")
        if not choice.strip().lstrip("-").isdigit():
            raise UsageError(f"--augment takes NAME=K (e.g. rotation=1), got {value!r}")
        wanted[name.strip()] = int(choice)
    try:
        chosen(model, 1, wanted)
    except AugmentationError as error:
        raise UsageError(f"--augment: {error}") from None
    except AttributeError:
        raise UsageError("--augment: this model was not trained with Distribution Augmentation") from None
    return wanted


def whole(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number in [minimum, maximum] (a count, a size, a seed), else exit 2 naming the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {'between ' + str(minimum) + ' and ' + str(maximum) if maximum is not None else 'at least ' + str(minimum)}, got {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number above 0 (not nan, not inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


#: seeds: the range training accepts (TrainConfig), for every verb
SEED = whole(0, 2**32 - 1)


def parser() -> argparse.ArgumentParser:
    from .core.plugins import arblocks_version

    p = Parser(prog="arblocks", description="Compose autoregressive image models from declarative JSON specs.")
    p.add_argument("--version", action="version", version=f"arblocks {arblocks_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    b = sub.add_parser("build", help="validate and build a spec, print its blocks and check its causality")
    b.add_argument("spec", help="path of a JSON spec")
    b.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help=SET_HELP)
    b.add_argument("--json", action="store_true", help="print a JSON report instead of a table")
    b.add_argument("--check-size", "--size", dest="check_size", type=whole(1), default=None, metavar="N",
                   help="check causality on an N x N image at most (default: the largest size whose check fits about a second per mode)")
    b.add_argument("--no-check", action="store_true", help="skip the causality check")
    b.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help=PRECISION_HELP)
    b.set_defaults(run=cmd_build)

    c = sub.add_parser("check", help="the full dependency map of a spec: violations, batch independence, coverage, blind spot")
    c.add_argument("spec", help="path of a JSON spec")
    c.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help=SET_HELP)
    c.add_argument("--size", type=whole(1), default=None, metavar="N", help="check on an N x N image (default: the spec's own size where feasible, else the largest that fits a few seconds)")
    c.add_argument("--mode", choices=["both", "train", "eval"], default="both", help="the model's mode(s) to check (default both)")
    c.add_argument("--samples", type=whole(1), default=1, help="random images whose dependencies are combined (default 1)")
    c.add_argument("--method", choices=["auto", "gradient", "perturbation"], default="auto",
                   help="gradient (exact), perturbation (for token inputs), auto: gradient where a gradient path exists")
    c.add_argument("--max-listed", type=whole(0), default=50, help="violations and unseen inputs listed in the text report")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help=PRECISION_HELP)
    c.set_defaults(run=cmd_check)

    rf = sub.add_parser("receptive-field", help="draw what one output pixel depends on, for one or several specs")
    rf.add_argument("spec", help="path of a JSON spec")
    rf.add_argument("--pixel", required=True, metavar="ROW,COL", help="the predicted pixel")
    rf.add_argument("--out", required=True, help="PNG file to write")
    rf.add_argument("--compare", nargs="+", default=[], metavar="SPEC", help="more specs, drawn side by side")
    rf.add_argument("--size", type=whole(1), default=None, metavar="N", help="image size (default: the spec's, at most 16)")
    rf.add_argument("--samples", type=whole(1), default=1, help="random images whose dependencies are combined (default 1)")
    rf.add_argument("--stage", default=None, metavar="NAME",
                    help="for specs with stages: the stage whose field is drawn (default: the last); earlier stages' variables are fully known to it")
    rf.add_argument("--json", action="store_true", help="also print coverage and leaks as JSON")
    rf.set_defaults(run=cmd_receptive_field)

    t = sub.add_parser("train", help="train a spec's model on a dataset (single process, or torchrun for DDP)")
    t.add_argument("spec", help="path of a JSON spec")
    t.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help=SET_HELP)
    t.add_argument("--data", required=True, help=DATA_HELP)
    t.add_argument("--test-data", default=None, help="source of the test split (default: the --data source)")
    t.add_argument("--out", required=True, help="run folder (checkpoint.pt, metrics.csv, bits_per_dim.png)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    for name, field in TRAIN_FLAGS:
        t.add_argument(f"--{name.replace('_', '-')}", *TRAIN_ALIASES.get(name, ()), dest=name, default=None, help=train_help(name), **field)
    add_transform_flags(t, training=True)
    t.set_defaults(run=cmd_train)

    e = sub.add_parser("eval", help="exact bits/dim (and nats per image) of a checkpoint on a dataset")
    e.add_argument("checkpoint", help=CHECKPOINT_HELP)
    e.add_argument("--data", default=None, help=DATA_HELP + " (default: the one the run "
                   "trained on, from run.json next to the checkpoint)")
    e.add_argument("--split", default="test", help="the split to evaluate: test (default), train or valid")
    e.add_argument("--batch-size", "--eval-batch-size", dest="batch_size", type=whole(1), default=64, help="images per forward pass (default 64; train calls it --eval-batch-size)")
    e.add_argument("--weights", choices=["ema", "raw"], default="ema", help="the averaged weights (default) or the last step's")
    e.add_argument("--binarize", action="store_true", help="binarize the images (threshold at half the range), as in training")
    e.add_argument("--data-key", default=None, help="array name inside an npz file")
    add_transform_flags(e, training=False)
    e.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--no-check", action="store_true", help="evaluate without checking the checkpoint's spec for causality first")
    e.add_argument("--recheck", action="store_true", help=RECHECK_HELP)
    e.add_argument("--orders", type=whole(1, 8), default=1, metavar="K",
                   help="average the likelihood over K of the 8 transposed/reflected forms of the spec's ordering (a mixture, as in "
                        "locally masked convolutions); needs blocks that work under every order (default 1)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--precision", "--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="run the model under autocast in bf16 or fp16 (default fp32; the likelihood is summed in float64)")
    e.add_argument("--channels-last", action="store_true", help="the weights and the images in the channels-last memory format")
    e.add_argument("--compile", action="store_true", help="torch.compile the model first (minutes of compilation; worth it on a GPU for large test sets)")
    e.add_argument("--augment", action="append", default=[], metavar="NAME=K", help=AUGMENT_HELP + "; the test images are transformed alike")
    e.set_defaults(run=cmd_eval)

    x = sub.add_parser("export", help="a run's model as a folder to share: spec.json, model.safetensors, README.md (the model card)")
    x.add_argument("source", help="a run folder (its checkpoint.pt) or a checkpoint file")
    x.add_argument("--out", required=True, help="the folder to write (upload it to the Hugging Face Hub as it is)")
    x.add_argument("--weights", choices=["ema", "raw"], default="ema", help="the averaged weights (default) or the last step's")
    x.add_argument("--force", action="store_true", help="write into --out even if it holds files")
    x.set_defaults(run=cmd_export)

    im = sub.add_parser("import", help="an original implementation's released weights into a spec, written as a checkpoint")
    im.add_argument("format", help="the weights' format (`arblocks blocks --kind importer` lists them), e.g. pixelcnn_pp_pytorch")
    im.add_argument("source", help="the released weights (a file in that format)")
    im.add_argument("--spec", required=True, help="the spec to import into, at the original's configuration (docs/pretrained.md)")
    im.add_argument("--out", required=True, help="the checkpoint to write: eval, sample and export take it")
    im.add_argument("--palette", default=None, metavar="FILE", help="the original's colour clusters (Image GPT's kmeans_centers.npy), stored in the checkpoint")
    im.add_argument("--weights", choices=["ema", "raw"], default="ema", help="the averaged (EMA) weights where the checkpoint holds them (default), or the raw ones")
    im.set_defaults(run=cmd_import)

    sm = sub.add_parser("sample", help="a PNG grid of samples from a checkpoint (or completions of an image)")
    sm.add_argument("checkpoint", help=CHECKPOINT_HELP)
    sm.add_argument("-n", type=whole(1), default=16, help="number of samples")
    sm.add_argument("--out", required=True, help="PNG file of a grid (up to 4096 images), or .npy for the levels as an array [n, C, H, W], written batch by batch")
    sm.add_argument("--batch-size", type=whole(1), default=64, help="images drawn at once: memory holds one batch's caches (default 64)")
    sm.add_argument("--temperature", type=positive_number, default=1.0, help="below 1 sharpens every distribution, above 1 flattens it (default 1)")
    sm.add_argument("--label", type=whole(0), default=None, help="class label, for class-conditional specs")
    sm.add_argument("--complete", default=None, metavar="IMAGE.png", help="keep the first --rows rows of this image and sample the rest")
    sm.add_argument("--rows", type=whole(0), default=None, help="with --complete: how many rows of the image to keep")
    sm.add_argument("--seed", type=SEED, default=0, help="seed of the draws, 0 to 2^32 - 1 as for train: one seed, one grid, whichever engine (default 0)")
    sm.add_argument("--weights", choices=["ema", "raw"], default="ema", help="the averaged weights (default) or the last step's")
    sm.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    sm.add_argument("--no-progress", action="store_true", help="no progress bar")
    sm.add_argument("--no-check", action="store_true", help="sample without checking the checkpoint's spec for causality first")
    sm.add_argument("--recheck", action="store_true", help=RECHECK_HELP)
    sm.add_argument("--engine", choices=["cached", "naive"], default="cached",
                    help="cached (default): compute only the positions each draw makes computable; naive: a full forward pass per draw. "
                         "In float64 (--verify strict) both draw the same images from one seed bit for bit; in float32 a draw on a rounding "
                         "boundary can flip (docs/training.md)")
    sm.add_argument("--verify", choices=["standard", "strict"], default="standard",
                    help="standard: draw in float32 and check every draw's parameters against a full forward pass (tolerance 1e-3 relative); "
                         "strict: draw in float64 (slower), where the check's tolerance is 1e-9 and the cached engine draws bitwise the naive one's images")
    sm.add_argument("--augment", action="append", default=[], metavar="NAME=K", help=AUGMENT_HELP + ": samples of the transformed images")
    sm.set_defaults(run=cmd_sample)

    s = sub.add_parser("schema", help="print the JSON Schema of a spec, with every registered block")
    s.add_argument("--indent", type=whole(0, 16), default=2, help="spaces per indentation level (default 2)")
    s.set_defaults(run=cmd_schema)

    bl = sub.add_parser("blocks", help="list the registered block types (and heads, inputs, orderings)")
    bl.add_argument("pattern", nargs="?", help="glob or substring of the type name")
    bl.add_argument("--kind", choices=[*KINDS, "all"], default="all", help="list only this kind of registered type (default all)")
    bl.add_argument("--json", action="store_true", help="print the list as JSON")
    bl.add_argument("--markdown", action="store_true", help="print the full catalogue with every field, in Markdown (docs/blocks.md)")
    bl.add_argument("--no-plugins", action="store_true", help="only the built-in types (no entry points)")
    bl.set_defaults(run=cmd_blocks)

    k = sub.add_parser("kit", help="the conformance kit: check a plugin, or one registered block, attention pattern, view or transformation")
    k.add_argument("name", help="a plugin (entry-point or distribution name) or a registered type")
    k.add_argument("--size", type=whole(3), default=5, metavar="N", help="the kit's image size (default 5)")
    k.add_argument("--json", action="store_true", help="print every finding as JSON")
    k.set_defaults(run=cmd_kit)

    pl = sub.add_parser("plugins", help="the loaded plugins, what each provides, and the errors of those that failed")
    pl.add_argument("--json", action="store_true", help="print the plugins as JSON")
    pl.set_defaults(run=cmd_plugins)
    return p


# -- verbs ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def spec_source(path: str):
    """Name the spec file in problems found while building it."""
    try:
        yield
    except SpecError as error:
        raise SpecError(error.problems, source=path) from None


def cmd_build(args) -> int:
    from .causality.check import check_spec
    from .causality.report import build_report, format_build
    from .core.builder import build_model

    spec = load_spec_with(args.spec, args.set)
    if staged(spec):
        return build_stages(args, spec)
    with spec_source(args.spec):
        model = build_model(spec)
        causality = None if args.no_check else check_spec(spec, size=args.check_size or "auto", full=model, precisions=precisions_for(args.precision))
    report = build_report(args.spec, spec, model, causality)
    print(json.dumps(report, indent=2) if args.json else format_build(report))
    return EXIT_OK if causality is None or causality.ok else EXIT_FAILED


def staged(spec) -> bool:
    """Whether a loaded spec has stages (imported late: the CLI starts without torch)."""
    from .spec.models import StagedSpec

    return isinstance(spec, StagedSpec)


def stage_sources(path: str, spec) -> list[tuple[str, object]]:
    """Each stage of a spec with stages, as (how reports name it, its ModelSpec)."""
    return [(f"{path} /stages/{k} ({stage.name})", stage_spec) for k, (stage, stage_spec) in enumerate(zip(spec.stages, spec.stage_specs))]


def build_stages(args, spec) -> int:
    """`arblocks build` of a spec with stages: each stage's table and causality check, then the total."""
    from .causality.check import check_spec
    from .causality.report import build_report, format_build
    from .staged.stages import build_staged

    with spec_source(args.spec):
        model = build_staged(spec)
    reports = []
    for (source, stage_spec), stage, stage_model, view in zip(stage_sources(args.spec, spec), spec.stages, model.stages, spec.views):
        causality = None if args.no_check else check_spec(stage_spec, size=args.check_size or "auto", full=stage_model,
                                                          precisions=precisions_for(args.precision))
        report = build_report(source, stage_spec, stage_model, causality)
        reports.append({**report, "stage": stage.name, "view": view.config.model_dump()})
    ok = all(r["ok"] for r in reports)
    total = model.num_parameters()
    if args.json:
        print(json.dumps({"ok": ok, "spec": args.spec, "name": spec.name, "stages": reports, "total_parameters": total}, indent=2))
    else:
        for report in reports:
            print(format_build(report), end="\n\n")
        print(f"{args.spec}: {spec.name}, {len(reports)} stages, total trainable parameters: {total:,}; "
              "bits/dim is the sum of the stages' nats over the image's dimensions (an upper bound for deterministic views)")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_check(args) -> int:
    from .causality.check import check_spec
    from .causality.report import format_check

    spec = load_spec_with(args.spec, args.set)
    modes = ("train", "eval") if args.mode == "both" else (args.mode,)
    # a spec with stages: each stage is an ordinary model whose earlier stages' variables are fully known inputs
    stages = stage_sources(args.spec, spec) if staged(spec) else [(args.spec, spec)]
    reports = []
    for _, stage_spec in stages:
        with spec_source(args.spec), naming_the_image(stage_spec.image, args.size):
            reports.append(check_spec(stage_spec, size=args.size or "auto", modes=modes, samples=args.samples,
                                      method=args.method, thorough=True, static_causality=False, precisions=precisions_for(args.precision)))
    if args.json:
        found = [{"spec": source, **r.to_dict(max_violations=10**9, per_output=True)} for (source, _), r in zip(stages, reports)]
        print(json.dumps(found[0] if not staged(spec) else {"spec": args.spec, "ok": all(r.ok for r in reports), "stages": found}, indent=2))
    else:
        print("\n\n".join(format_check(source, r, args.max_listed) for (source, _), r in zip(stages, reports)))
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def cmd_receptive_field(args) -> int:
    from .causality.check import check_image
    from .causality.receptive_field import pixel_field, render
    from .core.builder import build_model

    try:
        row, col = (int(v) for v in args.pixel.split(","))
    except ValueError:
        raise UsageError(f"--pixel takes ROW,COL (e.g. 4,2), got {args.pixel!r}") from None
    fields = []
    for path in [args.spec, *args.compare]:
        spec = load_spec_with(path, [])
        if staged(spec):
            names = [stage.name for stage in spec.stages]
            if args.stage is not None and args.stage not in names:
                raise UsageError(f"{path}: no stage '{args.stage}'; its stages are {', '.join(names)}")
            spec = spec.stage_specs[names.index(args.stage) if args.stage is not None else -1]
        with spec_source(path):
            model = build_model(spec, image=check_image(spec, args.size or 16), static_causality=False)
        try:
            fields.append(pixel_field(model, (row, col), name=Path(path).stem, samples=args.samples))
        except ValueError as error:
            raise UsageError(f"{path}: {error}") from None
    size = render(fields, args.out)
    summary = [{"spec": f.name, "pixel": list(f.pixel), "coverage": f.coverage, "leaks": f.leaks} for f in fields]
    if args.json:
        print(json.dumps({"out": args.out, "size": list(size), "fields": summary}, indent=2))
    else:
        for f in summary:
            print(f"{f['spec']}: pixel ({row},{col}) coverage {f['coverage']:.3f}{', LEAKS: ' + str(f['leaks']) if f['leaks'] else ''}")
        print(f"wrote {args.out} ({size[0]}x{size[1]})")
    return EXIT_FAILED if any(f["leaks"] for f in summary) else EXIT_OK


TRAIN_FLAGS = [
    ("steps", {"type": int}), ("batch_size", {"type": int}), ("lr", {"type": float}), ("lr_decay", {"type": float}),
    ("grad_clip", {"type": float}), ("ema_decay", {"type": float}), ("seed", {"type": int}), ("eval_every", {"type": int}),
    ("eval_batch_size", {"type": int}), ("checkpoint_every", {"type": int}), ("log_every", {"type": int}),
    ("max_bad_steps", {"type": int}), ("data_key", {}), ("device", {}), ("precision", {"choices": ["fp32", "bf16", "fp16"]}),
    ("compile", {"action": "store_const", "const": True}), ("compile_backend", {}), ("channels_last", {"action": "store_const", "const": True}),
    ("binarize", {"action": "store_const", "const": True}), ("no_init", {"action": "store_const", "const": True}),
    ("palette", {"type": int}), ("tensorboard", {"action": "store_const", "const": True}), ("tensorboard_samples", {"type": int}),
    ("eval_limit", {"type": int}),
    ("no_check", {"action": "store_const", "const": True}),
]


#: the data transforms' flags (Transforms' fields); eval takes the deterministic ones, by default the run's
TRANSFORM_FLAGS = [
    ("grayscale", {"action": "store_const", "const": True}), ("crop", {"metavar": "N|HxW"}), ("resize", {"metavar": "N|HxW"}),
    ("resize_mode", {"choices": ["area", "nearest"]}), ("bits", {"type": int}),
    ("random_crop", {"metavar": "N|HxW"}), ("hflip", {"action": "store_const", "const": True}),
]
PER_BATCH = ("random_crop", "hflip")


def add_transform_flags(p, training: bool) -> None:
    from .data.transforms import Transforms

    for name, options in TRANSFORM_FLAGS:
        if name in PER_BATCH and not training:
            continue
        field = Transforms.model_fields[name]
        default = "" if training else " (default: as the run was trained)"
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"transform_{name}", default=None, help=(field.description or name).rstrip(".") + default, **options)


def transform_values(args) -> dict:
    return {name: getattr(args, f"transform_{name}") for name, _ in TRANSFORM_FLAGS if getattr(args, f"transform_{name}", None) is not None}


def transforms_of(values: dict, base: dict | None = None):
    """Transforms from flags over ``base`` (a run's recorded ones); a bad value is exit 2 naming the flag."""
    from pydantic import ValidationError

    from .data.transforms import Transforms

    try:
        return Transforms(**{**(base or {}), **values})
    except ValidationError as error:
        raise option_problems(error, Transforms, "transforms") from None


def option_problems(error, model, what: str) -> SpecError:
    """A pydantic error of options given as flags (TrainConfig, Transforms): one problem per flag, exit 2."""
    from .spec.reading import pydantic_problems

    return SpecError([Problem(f"--{p.path.strip('/').replace('_', '-')}", p.type, p.message) for p in pydantic_problems(error, (), model, what)],
                     source="options")


#: other names of train's flags (older ones, kept working)
TRAIN_ALIASES = {"precision": ("--dtype",)}


SET_HELP = ("override a spec field, e.g. --set image.height=16 --set defaults.gated_resnet.dropout=0.1 (a dotted path, numbers "
            "index lists; a JSON value); validated like the spec, repeatable")


def load_spec_with(path: str, overrides: list[str]):
    """The spec of a file with ``--set`` overrides applied, validated (problems name the file or the override's path).
    A spec with stages gives a :class:`arblocks.spec.models.StagedSpec`."""
    from .spec.edit import apply_overrides
    from .spec.reading import read_spec_file
    from .staged.stages import parse_any

    data = read_spec_file(path)
    if overrides and isinstance(data, dict):
        data = apply_overrides(data, overrides)
    return parse_any(data, source=f"{path} with --set" if overrides else str(path))


def train_help(name: str) -> str:
    """The help of a train flag: the option's description in TrainConfig, with its default."""
    from .training.loop import TrainConfig

    if name == "no_init":
        return "skip the data-dependent initialization of weight-normalized layers"
    if name == "no_check":
        return "train without checking the spec's causality first (run.json says so); only for debugging a leak"
    field = TrainConfig.model_fields[name]
    default = "" if field.default is None or field.default is False else f" (default {field.default})"
    return (field.description or name).rstrip(".") + default


def cmd_train(args) -> int:
    from pydantic import ValidationError

    from .training.fit import fit
    from .training.loop import TrainConfig

    spec = load_spec_with(args.spec, args.set)
    values = {name: getattr(args, name) for name, _ in TRAIN_FLAGS if getattr(args, name) is not None}
    if values.pop("no_init", None):
        values["init"] = False
    if values.pop("no_check", None):
        values["check"] = False
    if transform_values(args):
        values["transforms"] = transforms_of(transform_values(args))
    try:
        config = TrainConfig(**values)
    except ValidationError as error:
        raise option_problems(error, TrainConfig, "train") from None
    with spec_source(args.spec):
        result = fit(spec, args.data, args.out, config=config, resume=args.resume, test_data=args.test_data, progress=not args.no_progress)
    test = f", test {result.test_bits_per_dim:.4f} bits/dim ({result.test_nats_per_image:.2f} nats per image)" if result.test_bits_per_dim is not None else ""
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print(f"{args.out}: step {result.step}, train {result.train_bits_per_dim:.4f} bits/dim{test}, {result.skipped_steps} skipped step(s)")
        if result.test_stages:
            print(format_stages(result.test_stages))
    return EXIT_OK


def format_stages(figures: list[dict]) -> str:
    """The per-stage lines of a staged model's test figures."""
    return "\n".join(f"  stage '{f['stage']}' ({f['view']['type']}): {f['nats_per_image']:.2f} nats per image, {f['bits_per_dim_own']:.4f} bits per "
                     f"dimension of its own variable, {f['bits_per_image_dim']:.4f} of the image's bits/dim" for f in figures)


def recorded_data(checkpoint: str, state: dict | None = None) -> tuple[str, dict]:
    """The data source a run evaluated on (its test source, else its training source) and its training options, from
    the run.json next to ``checkpoint`` (or, for an exported folder, what its weights' metadata recorded)."""
    record = Path(checkpoint).parent / "run.json"
    try:
        run = state["run"] if state and "run" in state else json.loads(record.read_text())
        source = run.get("test_data") or run["data"]
    except (OSError, ValueError, KeyError, TypeError):
        where = f"{checkpoint}'s metadata" if state and "run" in state else str(record)
        raise UsageError(f"--data is needed: {where} does not say which data the run used") from None
    if not isinstance(source, str):
        raise UsageError(f"--data is needed: the run in {record.parent} trained on images given in memory, not a data source")
    return source, run.get("config", {})


def cmd_eval(args) -> int:
    from .data import load_data
    from .staged.stages import StagedModel
    from .training.loop import World, evaluate, evaluate_stages, pick_device
    from .training.precision import to_memory_format

    device = pick_device(args.device, World())
    model, state = load_trained(args)
    if not args.no_check:
        proven_or_check(args, model, state, "evaluation", precisions_for(args.precision), device)
    if args.data is None:  # the run's own data, as run.json records it
        args.data, recorded = recorded_data(args.checkpoint, state)
        args.binarize = args.binarize or recorded.get("binarize", False)
        args.data_key = args.data_key or recorded.get("data_key")
    transforms = transforms_of(transform_values(args), state.get("config", {}).get("transforms"))
    data = load_data(args.data, args.split, model.image, args.binarize, args.data_key, palette=state.get("palette"), transforms=transforms)
    per_order = stages = None
    model = to_memory_format(model.to(device), args.channels_last)
    if args.compile:
        if args.orders != 1 or isinstance(model, StagedModel):
            raise UsageError("--compile goes with a single model of one order")
        model.compile(fullgraph=True)  # the forward pass; the likelihood sums stay eager
    step = {"precision": args.precision, "channels_last": args.channels_last}
    augment = parse_augment(args.augment, model) if args.augment else None
    if augment and (args.orders != 1 or isinstance(model, StagedModel)):
        raise UsageError("--augment goes with a single model of one order")
    if args.orders != 1 and isinstance(model, StagedModel):
        raise UsageError("--orders averages the orders of one model; a spec with stages has one order per stage")
    if isinstance(model, StagedModel):
        bpd, nats, stages = evaluate_stages(model, data, args.batch_size, device, progress=not args.no_progress, **step)
    elif args.orders != 1:
        from .training.order_average import evaluate_orders, ordering_variants

        try:
            models = ordering_variants(model.to(device), args.orders)
        except ValueError as error:
            raise UsageError(str(error)) from None
        bpd, nats, per_order = evaluate_orders(models, data, args.batch_size, device)
    else:
        bpd, nats = evaluate(model, data, args.batch_size, device, augment=augment, progress=not args.no_progress, **step)
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "step": state["step"], "split": args.split, "images": len(data), "bits_per_dim": bpd,
                          "nats_per_image": nats, "weights": args.weights, "orders": args.orders, "bits_per_dim_per_order": per_order,
                          **({"stages": stages} if stages else {}), **({"augment": augment} if augment else {})}))
    else:
        print(f"{args.checkpoint} (step {state['step']}, {args.weights} weights) on {args.data} {args.split} ({len(data)} images): "
              f"{bpd:.4f} bits/dim, {nats:.2f} nats per image" + (f", the images and the model under {augment}" if augment else ""))
        if stages:
            print("the sum of the stages (an upper bound on -log p(x): each view is a function of the image):\n" + format_stages(stages))
        if per_order is not None:
            print(f"averaged over {args.orders} orders; each order alone: {', '.join(f'{v:.4f}' for v in per_order)} bits/dim")
    return EXIT_OK


def load_trained(args):
    """``(model, state)`` of the command's checkpoint argument: a checkpoint file (``--weights`` picks EMA or raw), or
    an exported folder or Hub id (its one set of weights; ``state`` then holds what its metadata recorded)."""
    from .training.checkpoint import load_model
    from .weights.pretrained import is_pretrained, load_pretrained

    if not is_pretrained(args.checkpoint):
        return load_model(args.checkpoint, args.weights)
    model, info = load_pretrained(args.checkpoint)
    if args.weights == "raw" and info["weights"] == "ema":
        raise UsageError(f"--weights raw: {args.checkpoint} holds the EMA weights only (export the raw ones with `arblocks export --weights raw`)")
    args.weights = info["weights"]
    state = {key: info[key] for key in ("step", "config", "causality_record", "run", "palette") if key in info}
    return model, state


def cmd_export(args) -> int:
    from .weights.folder import export

    out = export(args.source, args.out, args.weights, args.force)
    print(f"wrote {out}: spec.json, model.safetensors ({args.weights} weights), README.md; "
          f"load it with arblocks.from_pretrained({str(out)!r}) or `arblocks sample {out} --out samples.png`")
    return EXIT_OK


def cmd_import(args) -> int:
    from .weights.importer import import_weights

    model = import_weights(args.format, args.source, args.spec, out=args.out, weights=args.weights, palette=args.palette)
    print(f"imported {args.source} ({args.format}) into {model.spec.name}: {model.num_parameters():,} parameters; wrote {args.out} "
          f"(`arblocks eval {args.out} --data ...`, `arblocks export {args.out} --out DIR`)")
    return EXIT_OK


def proven_or_check(args, model, state: dict, action: str, precisions: tuple[str, ...], device) -> None:
    """Skip the causality check when the checkpoint records a passed one of this spec with this code (say so in one
    line), else run it on the loaded model (only its small copy is built)."""
    from .causality.check import require_causal
    from .causality.record import covers, describe, fingerprint

    record = state.get("causality_record")
    if not args.recheck and covers(record, fingerprint(model.spec, precisions)):
        print(describe(record), file=sys.stderr)
        return
    require_causal(model.spec, action, full=model, precisions=precisions, device=device)


def cmd_sample(args) -> int:
    import torch

    from .sampling.grid import ImageWriter, load_image, writable_picture
    from .sampling.sample import CachedSampler, sample_batches
    from .staged.stages import StagedModel
    from .training.loop import World, pick_device

    try:  # everything checkable is checked before the model is loaded and minutes of drawing begin
        writable_picture(args.out)
    except ValueError as error:
        raise UsageError(f"--out: {error}") from None
    if args.rows is not None and args.complete is None:
        raise UsageError("--rows goes with --complete IMAGE.png (the rows of that image to keep)")
    device = pick_device(args.device, World())
    model, state = load_trained(args)
    if args.label is not None and not any(model.inputs[k].config.type == "class_label" for k in model.provided_inputs):
        raise UsageError("--label: this model is not conditioned on a class label")
    if not args.no_check:
        proven_or_check(args, model, state, "sampling", precisions_for("fp32"), device)  # sampling runs in float32
    model = model.to(device)
    if args.verify == "strict":  # float64: the engines agree bit for bit
        model = model.double()
    image = model.image
    conditioning = {}
    augment = parse_augment(args.augment, model) if args.augment else None
    if augment and not any(model.inputs[k].config.type == "augmentation" for k in model.provided_inputs):
        raise UsageError("--augment: this model's augmentation has no conditioning input (conditioning: null), so it cannot be told a transformation")
    for name in model.provided_inputs:
        config = model.inputs[name].config
        if config.type == "augmentation":
            from .core.augmentation import chosen

            conditioning[name] = chosen(model, args.n, augment).to(device)
            continue
        if config.type != "class_label":
            raise UsageError(f"input '{name}' ({config.type}) cannot be given on the command line")
        if args.label is None or not 0 <= args.label < config.num_classes:
            raise UsageError(f"this model is conditioned on a class: pass --label between 0 and {config.num_classes - 1}")
        conditioning[name] = torch.full((args.n,), args.label, dtype=torch.long, device=device)
    known = mask = None
    if args.complete and "palette" in state:
        raise UsageError("--complete is not supported yet for palette (token) models")
    if args.complete:
        if args.rows is None or not 0 <= args.rows <= image.height:
            raise UsageError(f"--complete needs --rows between 0 and {image.height}")
        try:
            known = load_image(args.complete, image.channels, image.height, image.width, image.bits)
        except (OSError, ValueError) as error:
            raise UsageError(f"--complete: {error}") from None
        mask = torch.zeros(image.height, image.width, dtype=torch.bool)
        mask[: args.rows] = True
    if isinstance(model, StagedModel):
        for name, view in zip(model.names, model.views):
            try:
                mask is None or view.known_pixels(mask)
            except NotImplementedError as error:
                raise UsageError(f"--complete: stage '{name}': {error}") from None
    palette = state.get("palette")
    try:
        channels = 3 if palette is not None else image.channels  # a palette model's tokens become RGB colours
        writer = ImageWriter(args.out, args.n, (channels, image.height, image.width), 256 if palette is not None else image.levels)
    except ValueError as error:
        raise UsageError(f"--out: {error}") from None
    slow = CachedSampler(model).fallback_blocks() if args.engine == "cached" and not isinstance(model, StagedModel) else []
    if slow:
        print(f"note: {len(slow)} block(s) have no incremental step and are recomputed over the whole map at every draw, "
              f"which slows sampling down: {', '.join(slow)} (a block gains one with forward_at or reach: docs/plugins.md)", file=sys.stderr)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    batches = sample_batches(model, args.n, args.batch_size, conditioning, known=known, known_mask=mask, engine=args.engine,
                             temperature=args.temperature, generator=generator, progress=not args.no_progress and args.n <= args.batch_size)
    for start, samples in batches:
        if palette is not None:  # tokens back to colours
            from .data.palette import colours

            samples = colours(samples, palette)
        writer.add(start, samples)
        if not args.no_progress and args.n > args.batch_size:
            print(f"{start + len(samples)}/{args.n} images", file=sys.stderr)
    print(f"wrote {args.out}: {writer.close()} from step {state['step']}")
    return EXIT_OK


def cmd_kit(args) -> int:
    from .testing import check_any

    try:
        report = check_any(args.name, size=args.size)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.json:
        print(json.dumps({"ok": report.ok, "findings": [vars(f) for f in report.findings], "notes": report.notes}, indent=2))
        return EXIT_OK if report.ok else EXIT_FAILED
    rows = [("block", "check", "passed", "failed"), *((b, c, str(p), str(f)) for b, c, p, f in report.table())]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for finding in report.failures():
        print(f"FAIL {finding.block} [{finding.case}] {finding.check}: {finding.detail}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"{args.name}: {len(report.findings)} check(s), {len(report.failures())} failed: {'PASSED' if report.ok else 'FAILED'}")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_plugins(args) -> int:
    from .core.plugins import get_registry

    registry = get_registry()
    rows = []
    for plugin in registry.plugins:
        provides = {}
        for entry in registry.find():
            if entry.plugin == plugin.name:
                provides.setdefault(entry.kind, []).append(entry.name)
        rows.append({"name": plugin.name, "distribution": plugin.distribution, "version": plugin.version, "provides": provides, "error": plugin.error})
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        version = f" {row['version']}" if row["version"] else ""
        if row["error"]:
            print(f"{row['name']} ({row['distribution']}{version}): NOT LOADED: {row['error']}")
            continue
        provided = "; ".join(f"{kind}s: {', '.join(names)}" for kind, names in row["provides"].items()) or "nothing"
        print(f"{row['name']} ({row['distribution']}{version}): {provided}")
    return EXIT_OK


def cmd_schema(args) -> int:
    from .core.schema import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=args.indent))
    return EXIT_OK


def cmd_blocks(args) -> int:
    from .core.plugins import get_registry
    from .core.registry import KINDS

    if args.no_plugins:
        from .core.plugins import load_registry

        registry = load_registry(entry_points=False)
    else:
        registry = get_registry()
    if args.markdown:
        from .core.catalogue import render_catalogue

        print(render_catalogue(registry), end="")
        return EXIT_OK
    kinds = KINDS if args.kind == "all" else (args.kind,)
    entries = registry.find(args.pattern, kinds)
    if args.json:
        print(json.dumps([{"type": e.name, "kind": e.kind, "plugin": e.plugin, "distribution": e.distribution, "description": e.description} for e in entries], indent=2))
    else:
        width = max((len(e.name) for e in entries), default=4)
        for e in entries:
            print(f"{e.name:<{width}}  {e.kind:<8}  {e.distribution:<16}  {e.description}")
        for p in registry.failed:
            print(f"(plugin '{p.name}' from {p.distribution} did not load: {p.error})", file=sys.stderr)
    if not entries:
        print(f"no registered type matches {args.pattern!r}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# -- entry point ---------------------------------------------------------------------------------
def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"arblocks: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    wants_json = "--json" in (argv if argv is not None else sys.argv[1:])
    try:
        args = parser().parse_args(argv)
        return args.run(args)
    except SpecError as error:
        if wants_json:
            print(json.dumps({"ok": False, "source": error.source, "problems": [p.to_dict() for p in error.problems]}, indent=2))
        else:
            print(error.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except ArblocksError as error:
        print(f"arblocks: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (MemoryError, RuntimeError) as error:
        if not out_of_memory(error):
            return internal_error(error)
        command = (argv if argv is not None else sys.argv[1:] or ["?"])[0]
        print(f"arblocks {command}: out of memory ({str(error).splitlines()[0][:200]}); {MEMORY_HINTS.get(command, 'use a smaller input')}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - never a raw traceback for users
        return internal_error(error)


def internal_error(error: BaseException) -> int:
    if os.environ.get("ARBLOCKS_DEBUG"):
        traceback.print_exception(error)
    print(f"arblocks: internal error: {type(error).__name__}: {error} (set ARBLOCKS_DEBUG=1 for the traceback)", file=sys.stderr)
    return EXIT_FAILED


#: what to do when a verb runs out of memory
MEMORY_HINTS = {
    "build": "the causality check's tensors grow with the image: pass --size N to check a smaller image, or --no-check",
    "check": "the check's tensors grow with the image and the spec's size: pass --size N to check a smaller image",
    "receptive-field": "pass --size N for a smaller image",
    "train": "lower --batch-size (or --eval-batch-size), or use a smaller --resize",
    "eval": "lower --batch-size",
    "sample": "lower --batch-size (images drawn at once)",
}


@contextlib.contextmanager
def naming_the_image(image, size: int | None):
    """Running out of memory while checking is a clear error that names the image (the check's tensors and its
    block-by-block proof at full size grow with it)."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        if not out_of_memory(error):
            raise
        raise UsageError(f"the causality check of this {image.channels}x{image.height}x{image.width} image needs more memory than this machine "
                         f"has ({str(error).splitlines()[0][:160]}); check a smaller image with --size N (and --set image.height/width "
                         f"for the block-by-block proof at full size){'' if size is None else f'; --size {size} was asked'}") from None


def out_of_memory(error: BaseException) -> bool:
    """An allocation failure of the CPU or of an accelerator (not a bug: the input is too large for this machine)."""
    text = str(error)
    return isinstance(error, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()


def run() -> None:
    sys.exit(main())
