"""The incremental contract: how a block computes its output at a few positions during cached sampling.

The cached sampler (:mod:`arblocks.sampling.cached`) keeps one buffer per stream, the size of one forward pass's activations,
and at every generation step asks each block for its output at the positions that have just become computable
(a :class:`Region`). A block answers in one of three ways, tried in this order:

1. ``forward_at(region, cache, *inputs, **aux) -> [B, C_out, n]``: an explicit incremental step. ``inputs`` and
   ``aux`` are the *full* buffers of the block's streams: every position the requested outputs may depend on holds its
   final value, the others hold stale (finite) values that a causal block never reads. ``cache`` is what the block's
   ``new_cache(batch, device, dtype)`` returned at the start of this sampling call (e.g. a key/value cache), or
   ``None``. Caches live outside the module, so a model can sample while another process trains it.
2. ``reach() -> Reach``: the block is *local*: translation-equivariant, zero-padded at the image's borders, and its
   output at a position depends only on input positions within the reach. The sampler then runs the block's ordinary
   ``forward`` on a small window of its inputs around the requested positions (:func:`windowed_forward`): no
   incremental code at all.
3. neither: the sampler runs the block's ``forward`` on the full buffers and keeps the requested positions. Exact,
   and slow; ``arblocks sample`` names such blocks once.

Whichever way is used, the sampler checks after the fact that the distribution parameters it used at every step equal
those of one full forward pass over the finished images, so a wrong incremental step can never pass silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Reach:
    """How far a local block's output at a position reads its inputs, in *input* coordinates around the input position
    that corresponds to it (the same position at one resolution; ``i * stride`` when the block downsamples by
    ``stride``; ``i // factor`` when it upsamples by ``factor``). Over-estimates are exact, only slower."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def __add__(self, other: Reach) -> Reach:
        """The reach of two same-resolution layers applied one after the other."""
        return Reach(self.top + other.top, self.bottom + other.bottom, self.left + other.left, self.right + other.right)

    @classmethod
    def kernel(cls, height: int, width: int, rows_below: bool = True, centred: bool = True) -> Reach:
        """The reach of a ``height x width`` kernel: centred on the position, or (``centred=False``) ending at it."""
        if centred:
            return cls(height // 2, height // 2 if rows_below else 0, width // 2, width // 2)
        return cls(height - 1, 0, width - 1, 0)


@dataclass
class Region:
    """Positions of one stream at which a block computes its output during one sampling step."""

    rows: torch.Tensor  # [n] long
    cols: torch.Tensor  # [n] long
    height: int  # the stream's size
    width: int
    box: tuple[int, int, int, int]  # first row, last row, first column, last column (inclusive)
    #: gather indices shared by the layers that read the same patches at this region (see :func:`conv_at`)
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    #: [n] raster index of every position
    flat: torch.Tensor | None = None
    #: ``(g, G)`` when only channel group g of the stream's G sub-pixel groups becomes final at these positions (the
    #: others are final already, or not yet): only its channels are kept, and a block may compute only those
    groups: tuple[int, int] | None = None

    @classmethod
    def of(cls, rows: torch.Tensor, cols: torch.Tensor, height: int, width: int) -> Region:
        box = (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max()))
        return cls(rows, cols, height, width, box, flat=rows * width + cols)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def full(self) -> bool:
        return len(self.rows) == self.height * self.width

    def to(self, device) -> Region:
        return Region(self.rows.to(device), self.cols.to(device), self.height, self.width, self.box, flat=self.flat.to(device), groups=self.groups)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """The values of a map [B, C, H, W] at the region: [B, C, n]."""
        return t.flatten(2).index_select(2, self.flat)

    def put(self, t: torch.Tensor, values: torch.Tensor, only_groups: bool = False) -> None:
        """Write values [B, C, n] into the contiguous map ``t`` [B, C, H, W] at the region (with ``only_groups``, only
        the channels of ``groups`` when it is set: how the sampler writes a stream)."""
        if only_groups and self.groups is not None:
            lo, hi = self.channel_range(t.shape[1])
            t, values = t[:, lo:hi], values[:, lo:hi]
        t.flatten(2).index_copy_(2, self.flat, values.to(t.dtype))

    def channel_range(self, channels: int) -> tuple[int, int]:
        """The channels ``[lo, hi)`` of ``groups``' group in a map of ``channels`` channels (group of channel i: i * G // channels)."""
        g, count = self.groups
        return -(-g * channels // count), -(-(g + 1) * channels // count)

    def strip(self, t: torch.Tensor) -> torch.Tensor:
        """The values at the region as a one-row map [B, C, 1, n], for layers that treat each position alone."""
        return self.take(t)[:, :, None, :]


def _window(first: int, last: int, size_in: int, size_out: int, before: int, after: int) -> tuple[int, int, int]:
    """Along one axis: the input slice [a, b) that outputs first..last read, and the output index of the slice's start."""
    if size_out <= size_in:
        stride = -(-size_in // size_out)
        a = max(0, first * stride - before) // stride * stride  # keep the stride's phase
        b = min(size_in, last * stride + after + 1)
        return a, b, a // stride
    factor = size_out // size_in
    a = max(0, first // factor - before)
    b = min(size_in, last // factor + after + 1)
    return a, b, a * factor


def windowed_forward(block, reach: Reach, region: Region, inputs, aux) -> torch.Tensor:
    """A local block's output at ``region`` from its ordinary forward on the window of its inputs the region reads."""
    if region.full:
        return region.take(block(*inputs, **aux))
    maps = [t for t in [*inputs, *aux.values()] if isinstance(t, torch.Tensor) and t.dim() == 4]
    if reach == Reach() and all(t.shape[2:] == (region.height, region.width) for t in maps):  # pointwise: the positions alone
        strip = lambda t: region.strip(t) if isinstance(t, torch.Tensor) and t.dim() == 4 else t  # noqa: E731
        return block(*map(strip, inputs), **{k: strip(v) for k, v in aux.items()})[:, :, 0]
    r0, r1, c0, c1 = region.box
    offset = None

    def crop(t):
        nonlocal offset
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            return t  # class labels and other per-image inputs
        a, b, out_r = _window(r0, r1, t.shape[2], region.height, reach.top, reach.bottom)
        c, d, out_c = _window(c0, c1, t.shape[3], region.width, reach.left, reach.right)
        offset = (out_r, out_c)
        return t[:, :, a:b, c:d]

    window_inputs = [crop(t) for t in inputs]
    window_aux = {k: crop(v) for k, v in aux.items()}
    out = block(*window_inputs, **window_aux)
    out_r, out_c = offset
    return out[:, :, region.rows - out_r, region.cols - out_c]


def no_step(method):
    """Marks a base class's ``forward_at`` that only stands for "no explicit step" (:class:`arblocks.Block`'s): a block
    that inherits it is computed by its reach or in full (:func:`incremental_kind`)."""
    method.no_step = True
    return method


def compute_at(layer, kind: str, region: Region, cache, args: list, kwargs: dict) -> torch.Tensor:
    """A layer's output [B, C, n] at the region by its :func:`incremental_kind`, from the full buffers of its inputs."""
    if kind == "step":
        return layer.forward_at(region, cache, *args, **kwargs)
    if kind == "window":
        return windowed_forward(layer, layer.reach(), region, args, kwargs)
    return region.take(layer(*args, **kwargs))


def incremental_kind(block) -> str:
    """How the cached sampler computes a block: ``step`` (its own forward_at), ``window`` (local, via its reach) or
    ``full`` (recomputed over the whole map: the fallback)."""
    step = getattr(type(block), "forward_at", None)
    if step is not None and not getattr(step, "no_step", False):
        return "step"
    if getattr(block, "reach", None) is not None and block.reach() is not None:
        return "window"
    return "full"


def conv_at(layer, x: torch.Tensor, region: Region, top: int, left: int, stride: int = 1, transform=None) -> torch.Tensor:
    """A :class:`~arblocks.core.layers.Conv` (not transposed) at the region: ``[B, C_out, n]``. Output ``(i, j)`` reads input
    rows ``i * stride - top ...`` and columns ``j * stride - left ...`` (the kernel's top-left tap); taps outside
    the input read zeros, after ``transform`` (a pointwise function, e.g. concat_elu) as with ``F.pad(transform(x))``."""
    weight = layer.weight()  # [out, in, kh, kw]
    kh, kw = weight.shape[2:]
    key = ("conv", kh, kw, top, left, stride, *x.shape[2:])
    if key not in region.memo:
        if len(region) == 1:  # the common case, built in Python: far fewer calls than the tensor form
            r, c = region.box[0] * stride - top, region.box[2] * stride - left
            region.memo[key] = single_patch(list(range(r, r + kh)), list(range(c, c + kw)), *x.shape[2:], x.device)
        else:
            device = x.device
            rr = (region.rows * stride - top)[:, None] + torch.arange(kh, device=device)  # [n, kh]
            cc = (region.cols * stride - left)[:, None] + torch.arange(kw, device=device)  # [n, kw]
            region.memo[key] = patch_index(rr, cc, None, *x.shape[2:])
    return patch_linear(read_patches(x, *region.memo[key], transform), weight, layer.conv.bias)


def patch_index(rr: torch.Tensor, cc: torch.Tensor, keep: torch.Tensor | None, height: int, width: int):
    """(flat index, patch shape [n, kh, kw], mask or None) of patches at rows ``rr [n, kh]`` x columns ``cc [n, kw]``;
    taps outside the map, or where ``keep [n, kh, kw]`` is False, read zeros."""
    inside = ((rr >= 0) & (rr < height))[:, :, None] & ((cc >= 0) & (cc < width))[:, None, :]
    if keep is not None:
        inside = inside & keep
    flat = rr.clamp(0, height - 1)[:, :, None] * width + cc.clamp(0, width - 1)[:, None, :]  # [n, kh, kw]
    return flat.flatten(), flat.shape, None if bool(inside.all()) else inside


def single_patch(rows: list, cols: list, height: int, width: int, device):
    """:func:`patch_index` of one position's patch from Python lists of rows and columns (None: a tap that reads zero)."""
    inside = [r is not None and c is not None and 0 <= r < height and 0 <= c < width for r in rows for c in cols]
    flat = [min(max(r or 0, 0), height - 1) * width + min(max(c or 0, 0), width - 1) for r in rows for c in cols]
    shape = (1, len(rows), len(cols))
    mask = None if all(inside) else torch.tensor(inside, device=device).view(shape)
    return torch.tensor(flat, device=device), shape, mask


def read_patches(x: torch.Tensor, index: torch.Tensor, shape, inside: torch.Tensor | None, transform=None) -> torch.Tensor:
    """The patches of :func:`patch_index` from ``x [B, C, H, W]``: ``[B, C, n, kh, kw]``, zero where masked (after ``transform``)."""
    patches = x.flatten(2).index_select(2, index).unflatten(2, shape)
    if transform is not None:
        patches = transform(patches)
    return patches if inside is None else patches * inside.to(patches.dtype)


def patch_linear(patches: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``[B, C, n, kh, kw]`` patches times a ``[out, C, kh, kw]`` kernel: ``[B, out, n]`` (``F.linear``: the cheapest
    call for a few positions)."""
    b, c, n = patches.shape[:3]
    rows = patches.transpose(1, 2).reshape(b, n, -1)  # [B, n, C * kh * kw]
    return F.linear(rows, weight.flatten(1), bias).transpose(1, 2)


def pointwise_at(layer, values: torch.Tensor) -> torch.Tensor:
    """A 1x1 :class:`~arblocks.core.layers.Conv` on values ``[B, C, n]``: ``[B, out, n]``."""
    return F.linear(values.transpose(1, 2), layer.weight().flatten(1), layer.conv.bias).transpose(1, 2)


def attention_bias(allowed: torch.Tensor, batch: int, heads: int, dtype) -> torch.Tensor:
    """The additive mask ``[B * H, m, N]`` (0 or -inf) of a bool ``allowed [1 or H, m, N]`` (True: attend), for :func:`attend_at`."""
    m, n = allowed.shape[-2:]
    return torch.where(allowed, 0.0, float("-inf")).to(dtype).expand(batch, heads, m, n).reshape(batch * heads, m, n)


def attend_at(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Masked attention of a few queries ``q [B, H, m, c]`` over all keys ``k, v [B, H, N, c]`` with the additive mask
    ``bias`` of :func:`attention_bias` (every row keeps at least one key). The result of
    ``scaled_dot_product_attention`` with that mask, in fewer and cheaper calls for a handful of queries."""
    b, h, m, c = q.shape
    n = k.shape[2]
    scores = torch.baddbmm(bias, q.reshape(b * h, m, c), k.reshape(b * h, n, c).transpose(1, 2), alpha=c**-0.5)
    return torch.bmm(scores.softmax(-1), v.reshape(b * h, n, v.shape[-1])).view(b, h, m, v.shape[-1])
