"""PixelSNAIL's TensorFlow original (github: neocxi/pixelsnail-public, the released CIFAR-10 model at 2.85 bits/dim,
``--model=h12_noup_smallkey``) into specs/pixelsnail.json.

The original builds on pixel-cnn's ``nn.py``: layers named by counters in creation order under ``model``
(``conv2d_N`` for the shifted convolutions, ``dense_N`` for every network-in-network layer, a gated resnet over
``nin`` included), each with weight-normalized ``V``, ``g``, ``b`` and their Polyak averages. The spec's blocks come in
the original's order: the two shifted convolutions of the first stream; per attention round the gated resnets
(``conv2d``), then the key/value branch (a gated resnet of two ``dense`` layers and the ``dense`` projection to the
16 key and F/2 value channels, the spec's ``conv`` with kernel 1 and its two slices), the query branch (likewise,
to 16 channels), and the gated resnet that mixes the attention's output in (``dense`` first layer, ``dense`` skip,
``dense`` second layer); the output ``dense`` last. The mapping is the PixelCNN++ importer's
(:func:`arblocks.weights.importers.pixelcnn_pp_tf.convert_counted`); the attention has no parameters (the original
normalizes its masked exponentials with 1e-6 added to the sum, a relative difference below 1e-6 from a softmax).
"""

from __future__ import annotations

from typing import Literal

from ...core.hookspecs import hookimpl
from ..importer import ImporterConfig
from .pixelcnn_pp_tf import PixelCNNppTF


class PixelSNAILTFConfig(ImporterConfig):
    """PixelSNAIL's TensorFlow original (neocxi/pixelsnail-public, h12_noup_smallkey): its checkpoint (read without TensorFlow), EMA weights by default, into specs/pixelsnail.json."""

    type: Literal["pixelsnail_tf"] = "pixelsnail_tf"


class PixelSNAILTF(PixelCNNppTF):
    """PixelCNN++'s TensorFlow importer (reading, EMA choice and :func:`convert_counted`) under PixelSNAIL's name."""

    Config = PixelSNAILTFConfig


@hookimpl
def arblocks_register_importers(register):
    register(PixelSNAILTF)
