"""``channel_gate``: squeeze-and-excitation that stays causal.

Squeeze-and-excitation (Hu et al. 2018) rescales each channel by a gate computed from the channel's mean over the
whole image, which lets every position see the future. Here the mean at position p is taken over the positions up to
p in raster order only (a running mean), and the two 1x1 layers of the excitation are masked by sub-pixel group, so
the block keeps every causal state its input has.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from einops import rearrange
from pydantic import Field

from arblocks import Block, BlockConfig, DependencyMask, hookimpl
from arblocks.core import Conv, conv_mask
from arblocks.spec import BlockError


class ChannelGateConfig(BlockConfig):
    """Causal squeeze-and-excitation: each channel scaled by a gate computed from its running mean over the positions so far."""

    type: Literal["channel_gate"] = "channel_gate"
    reduction: int = Field(4, gt=0, le=64, description="The excitation's hidden layer has channels / reduction channels.")


class ChannelGate(Block):
    Config = ChannelGateConfig
    examples: ClassVar[list[dict]] = [{}, {"reduction": 2}]

    def __init__(self, config: ChannelGateConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = inputs[0]
        if source.kind != "map":
            raise BlockError("channel_gate reads a feature map", field="in")
        groups = ctx.image.channels
        hidden = max(groups, source.channels // config.reduction)
        self.squeeze = Conv(source.channels, hidden, 1, mask=conv_mask("B", hidden, source.channels, 1, groups))
        self.excite = Conv(hidden, source.channels, 1, mask=conv_mask("B", source.channels, hidden, 1, groups))
        self.output_info = source

    def forward(self, x):
        h, w = x.shape[2:]
        flat = rearrange(x, "b c h w -> b c (h w)")
        count = torch.arange(1, h * w + 1, device=x.device, dtype=x.dtype)
        running_mean = rearrange(flat.cumsum(-1) / count, "b c (h w) -> b c h w", h=h, w=w)
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(running_mean))))
        return x * gate

    def dependency_mask(self):
        """What each output may read, so that the causality check proves the block at any image size without running
        it at every position: sub-pixel group g at raster position p reads groups up to g at positions up to p."""
        info, groups = self.output_info, self.image.channels
        position = torch.arange(info.height * info.width).repeat_interleave(groups)  # units in storage order (h w g)
        group = torch.arange(groups).repeat(info.height * info.width)
        reads = (position[None, :] <= position[:, None]) & (group[None, :] <= group[:, None])
        return DependencyMask({0: reads}, per_pixel=groups)

    def forward_at(self, region, cache, x):
        """Cached sampling: the output at a few positions, from the full buffer of the input. Every position up to
        each requested one (in raster order) holds its final value there, which is all the running mean reads."""
        flat = rearrange(x, "b c h w -> b c (h w)")
        running_mean = torch.stack([flat[:, :, : i + 1].mean(-1) for i in region.flat.tolist()], dim=-1)  # [B, C, n]
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(running_mean[:, :, None]))))[:, :, 0]
        return region.take(x) * gate

    def causality(self, inputs, aux):
        return inputs[0]  # running means over earlier positions and group-masked 1x1 layers keep the input's state


@hookimpl
def arblocks_register_blocks(register):
    register(ChannelGate)
