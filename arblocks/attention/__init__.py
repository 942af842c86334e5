"""Attention over an image as a sequence: the sequence layouts, the registered attention patterns (which earlier
positions a query may attend to), and the kernels that compute masked attention (dense, tiled, FlexAttention).

It imports only :mod:`arblocks.core` and :mod:`arblocks.spec`; the attention blocks (``causal_attention``,
``transformer_block``) are in :mod:`arblocks.blocks` and use it.
"""

from .kernels import MaskedAttention
from .patterns import AttentionPattern, PatternConfig, attention_mask, frontier_mask, pattern_of
from .sequence import SequencePositions, from_sequence, sequence_layout, to_sequence

__all__ = ["AttentionPattern", "MaskedAttention", "PatternConfig", "SequencePositions", "attention_mask", "from_sequence", "frontier_mask",
           "pattern_of", "sequence_layout", "to_sequence"]
