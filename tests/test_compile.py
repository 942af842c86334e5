"""No graph breaks and no host synchronisation in the forward pass: every shipped spec, shrunk, traces as
one graph under ``torch.compile(fullgraph=True)``. The ``eager`` backend traces without generating code, which keeps
this quick on the CPU; inductor's code generation is exercised by one training run with ``--compile``."""

import pytest
import torch

from arblocks.core.builder import build_model
from arblocks.staged.stages import build_any, parse_any
from tests.test_cached_sampling import SHIPPED, SIZES, shrunk


def compiles_whole(model, x, **cond) -> torch.Tensor:
    torch._dynamo.reset()
    compiled = torch.compile(model.nll, fullgraph=True, backend="eager")
    return compiled(x, **cond)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_traces_as_one_graph(name):
    torch.manual_seed(0)
    model = build_model(shrunk(name, SIZES.get(name, 5))).eval()
    image = model.image
    x = torch.randint(0, image.levels, (2, image.channels, image.height, image.width))
    cond = {k: model.inputs[k].example(2, torch.Generator().manual_seed(0)) for k in model.provided_inputs}
    nats = compiles_whole(model, x, **cond)  # fullgraph: a graph break raises
    torch.testing.assert_close(nats, model.nll(x, **cond))


@pytest.mark.slow
def test_a_spec_with_stages_traces_as_one_graph():
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "specs" / "tiny_aux_pyramid.json").read_text())
    model = build_any(parse_any(data)).eval()
    image = model.image
    x = torch.randint(0, image.levels, (2, image.channels, image.height, image.width))
    torch._dynamo.reset()
    nats = torch.compile(model, fullgraph=True, backend="eager")(x)
    torch.testing.assert_close(nats, model(x))


def test_out_of_range_levels_are_still_refused_in_eager_mode_on_the_cpu():
    model = build_model(shrunk("pixelcnn", 5))
    with pytest.raises(ValueError, match="levels must lie in"):
        model.nll(torch.full((1, 3, 5, 5), 256))
