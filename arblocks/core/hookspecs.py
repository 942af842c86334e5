"""The hooks a plugin implements.

A plugin is a module (or any object) with functions decorated by :data:`hookimpl`, declared in its
package metadata under the ``arblocks`` entry-point group::

    [project.entry-points.arblocks]
    my_blocks = "my_package.plugin"

Built-in blocks are registered through these very hooks (see ``arblocks/blocks/``).
Each hook receives a ``register`` callback; call it once per class to register.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "arblocks"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def arblocks_register_blocks(register):
    """Register block types.

    Call ``register(BlockClass)`` for each block. ``BlockClass`` subclasses :class:`arblocks.Block`,
    has a ``Config`` pydantic model whose ``type`` field is a ``Literal`` with the block's name,
    and states its causality by implementing ``causality()``.
    """


@hookspec
def arblocks_register_heads(register):
    """Register output heads.

    Call ``register(HeadClass)`` for each head. ``HeadClass`` subclasses :class:`arblocks.Head`:
    it turns features into distribution parameters and gives the negative log-likelihood of an image.
    """


@hookspec
def arblocks_register_inputs(register):
    """Register extra input types (class labels, positional maps, conditioning images).

    Call ``register(InputClass)`` for each type. ``InputClass`` subclasses :class:`arblocks.InputType`.
    """


@hookspec
def arblocks_register_orderings(register):
    """Register generation orderings of the pixels.

    Call ``register(OrderingClass)`` for each ordering. ``OrderingClass`` subclasses
    :class:`arblocks.Ordering` and gives the rank of every pixel in the generation order.
    """


@hookspec
def arblocks_register_attention_patterns(register):
    """Register attention patterns: which earlier positions a query may attend to.

    Call ``register(PatternClass)`` for each. ``PatternClass`` subclasses :class:`arblocks.AttentionPattern`
    and gives a boolean [N, N] matrix over a sequence's positions; blocks always intersect it with the causal order.
    """


@hookspec
def arblocks_register_datasets(register):
    """Register data sources for `arblocks train`, `eval` and `sample --complete`.

    Call ``register(DatasetClass)`` for each. ``DatasetClass`` subclasses :class:`arblocks.data.DatasetType`;
    its ``Config.type`` is the name used in source strings (``name:PATH``).
    """


@hookspec
def arblocks_register_views(register):
    """Register views: deterministic functions of the image (a grayscale image, a pyramid's lower level) that a model
    of several stages models first.

    Call ``register(ViewClass)`` for each. ``ViewClass`` subclasses :class:`arblocks.staged.views.View`.
    """


@hookspec
def arblocks_register_transformations(register):
    """Register transformations: families of bijections of the image (rotations, a jigsaw, ...) that Distribution
    Augmentation trains on, telling the model which one was applied.

    Call ``register(TransformationClass)`` for each. ``TransformationClass`` subclasses
    :class:`arblocks.core.augmentation.Transformation`.
    """


@hookspec
def arblocks_register_importers(register):
    """Register weight importers: an original implementation's released weights (its checkpoint format and
    parameter names) mapped onto a spec's model, for `arblocks import FORMAT SOURCE --spec SPEC`.

    Call ``register(ImporterClass)`` for each. ``ImporterClass`` subclasses
    :class:`arblocks.weights.importer.WeightImporter`; its ``Config.type`` is the format's name.
    """
