"""The report of `arblocks build`: a table of blocks and the causality check, as text or JSON."""

from __future__ import annotations

from ..core.model import ARModel
from ..spec.models import ModelSpec
from .check import CausalityReport


def build_report(source: str, spec: ModelSpec, model: ARModel, causality: CausalityReport | None) -> dict:
    image = spec.image
    return {
        "ok": causality is None or causality.ok,
        "spec": source,
        "name": spec.name,
        "image": {"channels": image.channels, "height": image.height, "width": image.width, "bits": image.bits},
        "ordering": spec.ordering.type,
        "blocks": [
            {"name": r.label, "type": r.type, "output": r.shape, "parameters": r.params, "depth": r.depth, "causal": r.causal}
            for r in model.rows
        ],
        "total_parameters": model.num_parameters(),
        "causality": None if causality is None else causality.to_dict(max_violations=100),
        "causality_summary": None if causality is None else causality.summary(),
    }


def format_build(report: dict) -> str:
    image = report["image"]
    lines = [
        f"{report['spec']}: {report['name']} (image {image['channels']}x{image['height']}x{image['width']}, {image['bits']} bits, ordering {report['ordering']})"
    ]
    rows = [("name", "type", "output", "params", "state")]
    for b in report["blocks"]:
        indent = "  " * b["depth"]
        rows.append((indent + b["name"], indent + b["type"], b["output"], f"{b['parameters']:,}", b["causal"]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}".rstrip())
    lines.append(f"total trainable parameters: {report['total_parameters']:,}")
    c = report["causality"]
    if c is None:
        lines.append("causality check: skipped (--no-check)")
    else:
        ch, h, w = c["image"]
        how = ("float64 gradients" if c["method"] == "gradient" else "float64 perturbations of every input") + ", value walk, state checks"
        lines.append(f"causality check on a {ch}x{h}x{w} image ({how}, train and eval): {'PASSED' if c['ok'] else 'FAILED'}")
        lines.extend("  " + line for line in report["causality_summary"].splitlines())
    return "\n".join(lines)


def format_check(source: str, report, max_listed: int = 50) -> str:
    """The full text report of `arblocks check`: every violation (up to max_listed), batch independence, the coverage grid."""
    c, h, w = report.image
    how = ("float64 gradients" if report._main.method == "gradient" else "float64 perturbations") + ", value walk, state checks"
    lines = [f"{source}: causality check on a {c}x{h}x{w} image, ordering {report.ordering}, {how}: {'PASSED' if report.ok else 'FAILED'}"]
    for mode, r in report.modes.items():
        lines.append(f"{mode} mode: {len(r.violations)} violation(s); batch {'independent' if r.batch_independent else 'NOT independent: an image depends on another'}")
        for v in r.violations[:max_listed]:
            lines.append(f"  {v}")
        if len(r.violations) > max_listed:
            lines.append(f"  ... and {len(r.violations) - max_listed} more (--max-listed, or --json for all)")
        lines.extend(f"  state problem: {p}" for p in r.problems)
        if r.perturbations:
            lines.append(f"  value perturbation: {r.perturbations} single-input changes compared bit for bit in float64"
                         + (f"; again in {r.describe_precisions()}" if r.precisions else ""))
        elif r.precisions:
            lines.append(f"  value perturbation in {r.describe_precisions()} only, to the top level: the float64 walk ran "
                         "block by block at full size (below)")
    if report.full_size is not None:
        lines.append(report.full_size.describe())
    coverage = report.coverage.nan_to_num(1.0).amin(0)  # [H, W]: the worst output channel of each pixel
    lines.append(f"coverage of the allowed past per output pixel (worst channel), min {report.min_coverage:.3f}, mean {report.mean_coverage:.3f}:")
    if h <= 16 and w <= 16:
        lines.extend("  " + " ".join(f"{float(v):.2f}" for v in row) for row in coverage)
    spot = report.blind_spot()
    if spot is None:
        lines.append("no blind spot: every output sees all of its allowed past")
    else:
        (oc, r, col), unseen = spot
        by_pixel: dict[tuple[int, int], list[int]] = {}
        for uch, ur, uc in unseen:
            by_pixel.setdefault((ur, uc), []).append(uch)
        lines.append(f"blind spot of the worst output (row {r}, col {col}, channel {oc}): {len(unseen)} allowed input(s) unseen:")
        lines.extend(f"  (row {ur}, col {uc}) channel(s) {','.join(map(str, chs))}" for (ur, uc), chs in list(by_pixel.items())[:max_listed])
    return "\n".join(lines)
