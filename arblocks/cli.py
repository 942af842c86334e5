"""The ``arblocks`` command. Thin: every verb calls a library function.

Exit status: 0 success, 1 a causality check failed (or an internal error), 2 bad input (spec, usage, plugins).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Sequence

from .errors import ArblocksError, SpecError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(ArblocksError):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 as well, but through our own message format
        raise UsageError(f"{self.prog}: {message}")


def parser() -> argparse.ArgumentParser:
    from . import __version__

    p = Parser(prog="arblocks", description="Compose autoregressive image models from declarative JSON specs.")
    p.add_argument("--version", action="version", version=f"arblocks {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    b = sub.add_parser("build", help="validate and build a spec, print its blocks and check its causality")
    b.add_argument("spec", help="path of a JSON spec")
    b.add_argument("--json", action="store_true", help="print a JSON report instead of a table")
    b.add_argument("--check-size", type=int, default=None, metavar="N",
                   help="check causality on an N x N image at most (default: the largest size whose check fits about a second per mode)")
    b.add_argument("--no-check", action="store_true", help="skip the causality check")
    b.set_defaults(run=cmd_build)

    s = sub.add_parser("schema", help="print the JSON Schema of a spec, with every registered block")
    s.add_argument("--indent", type=int, default=2)
    s.set_defaults(run=cmd_schema)

    bl = sub.add_parser("blocks", help="list the registered block types (and heads, inputs, orderings)")
    bl.add_argument("pattern", nargs="?", help="glob or substring of the type name")
    bl.add_argument("--kind", choices=["block", "head", "input", "ordering", "all"], default="all")
    bl.add_argument("--json", action="store_true")
    bl.add_argument("--markdown", action="store_true", help="print the full catalogue with every field, in Markdown (docs/blocks.md)")
    bl.set_defaults(run=cmd_blocks)
    return p


# -- verbs ---------------------------------------------------------------------------------------
def cmd_build(args) -> int:
    from .builder import build_model
    from .causality import check_spec
    from .report import build_report, format_build

    from .validate import load_spec

    if args.check_size is not None and args.check_size < 1:
        raise UsageError("--check-size must be at least 1")
    spec = load_spec(args.spec)
    try:
        model = build_model(spec)
        causality = None if args.no_check else check_spec(spec, size=args.check_size or "auto", parameters=model.num_parameters())
    except SpecError as error:
        raise SpecError(error.problems, source=args.spec) from None
    report = build_report(args.spec, spec, model, causality)
    print(json.dumps(report, indent=2) if args.json else format_build(report))
    return EXIT_OK if causality is None or causality.ok else EXIT_FAILED


def cmd_schema(args) -> int:
    from .schema import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=args.indent))
    return EXIT_OK


def cmd_blocks(args) -> int:
    from .plugins import get_registry
    from .registry import KINDS

    registry = get_registry()
    if args.markdown:
        from .catalogue import render_catalogue

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
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - never a raw traceback for users
        if os.environ.get("ARBLOCKS_DEBUG"):
            traceback.print_exc()
        print(f"arblocks: internal error: {type(error).__name__}: {error} (set ARBLOCKS_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILED


def run() -> None:
    sys.exit(main())
