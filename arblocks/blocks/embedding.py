"""Class-label embedding: a learned vector per class, broadcast over the image as a feature map."""

from __future__ import annotations

from typing import Literal

from einops import repeat
from pydantic import Field
from torch import nn

from ..core.block import Block
from ..core.hookspecs import hookimpl
from ..core.ops import label_vectors
from ..core.streams import Causal
from ..spec.errors import BlockError
from ..spec.models import BlockConfig


class EmbeddingConfig(BlockConfig):
    """Learned embedding of a class-label stream, broadcast to a constant feature map (add it to features for class conditioning)."""

    type: Literal["embedding"] = "embedding"
    channels: int = Field(gt=0, le=65536, description="Channels of the embedding.")
    height: int | None = Field(None, gt=0, description="Height of the map; defaults to the image's.")
    width: int | None = Field(None, gt=0, description="Width of the map; defaults to the image's.")


class Embedding(Block):
    Config = EmbeddingConfig
    examples = [{"channels": 4}]
    orderings = None  # a label carries nothing of the image

    def __init__(self, config: EmbeddingConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        label = inputs[0]
        if label.kind != "label":
            raise BlockError(f"embedding reads a class-label stream (an input of type class_label), got a {label.describe()} map", field="in")
        self.table = nn.Embedding(label.channels, config.channels)
        self.size = (config.height or ctx.image.height, config.width or ctx.image.width)
        self.output_info = label.with_(kind="map", channels=config.channels, height=self.size[0], width=self.size[1])

    def forward(self, labels):
        return repeat(label_vectors(self.table, labels), "b c -> b c h w", h=self.size[0], w=self.size[1])

    def forward_at(self, region, cache, labels):
        return repeat(label_vectors(self.table, labels), "b c -> b c n", n=len(region))

    def causality(self, inputs, aux):
        if inputs[0] != Causal.NONE:
            raise BlockError("embedding must read a stream that is independent of the image", field="in")
        return Causal.NONE


@hookimpl
def arblocks_register_blocks(register):
    register(Embedding)
