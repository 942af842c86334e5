"""PixelCNN++ as a spec: the original's parameter count, causality, coverage 1, conditioning, data-dependent init."""

from pathlib import Path

import pytest
import torch

from arblocks import build_model, load_spec
from arblocks.causality.check import check_model
from arblocks.core.layers import Conv, data_dependent_init
from tests.helpers import shrunk_spec

SPECS = Path(__file__).parent.parent / "specs"
SMALL = {5: 1, 6: 2}  # nr_resnet 5 -> 1 (the down pass has nr_resnet + 1)


@pytest.mark.slow
def test_parameter_counts_match_the_original_implementation():
    model = build_model(load_spec(SPECS / "pixelcnn_pp.json"))
    assert model.num_parameters() == 53_659_080
    assert model(torch.randint(0, 256, (1, 3, 32, 32))).shape == (1, 100, 32, 32)
    assert build_model(load_spec(SPECS / "pixelcnn_pp_classcond.json")).num_parameters() == 53_863_880


def test_skips_are_consumed_in_reverse_order():
    model = build_model(load_spec(SPECS / "pixelcnn_pp.json"))
    pushes = [s for s in model.steps if s.push]
    pops = [r for s in model.steps for refs in [s.inputs, *s.aux.values()] for r in refs if r.kind == "pop"]
    assert len(pushes) == len(pops) == 2 * 18  # u and ul: 1 + 3 x 5 + 2 each


@pytest.mark.slow
def test_small_pixelcnn_pp_is_causal_with_full_coverage():
    spec = shrunk_spec(SPECS / "pixelcnn_pp.json", divide=10, size=8)  # full depth, 16 filters, resolutions 8/4/2
    report = check_model(build_model(spec))
    assert report.ok, report.summary()
    assert report.min_coverage == 1.0, report.summary()


@pytest.mark.slow
def test_class_conditional_pixelcnn_pp_uses_the_label():
    model = build_model(shrunk_spec(SPECS / "pixelcnn_pp_classcond.json", divide=10, times=SMALL, size=8)).eval()
    x = torch.randint(0, 256, (2, 3, 8, 8))
    a = model(x, label=torch.tensor([3, 3]))
    b = model(x, label=torch.tensor([3, 7]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    assert check_model(model).ok


def test_data_dependent_init_normalizes_every_layer():
    torch.manual_seed(0)
    model = build_model(shrunk_spec(SPECS / "pixelcnn_pp.json", divide=10, times=SMALL, size=8)).eval()
    x = torch.randint(0, 256, (16, 3, 8, 8))
    assert data_dependent_init(model, x) == sum(isinstance(m, Conv) and m.weight_normed for m in model.modules())
    outputs = {}
    hooks = [m.register_forward_hook(lambda mod, i, o: outputs.setdefault(mod, o)) for m in model.modules() if isinstance(m, Conv) and m.weight_normed]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for layer, out in outputs.items():
        mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3), unbiased=False)
        assert mean.abs().max() < 1e-4
        assert torch.allclose(std, torch.full_like(std, layer.init_scale), rtol=1e-3)


def test_class_vectors_start_as_small_as_the_originals():
    """PixelCNN++ initializes its class weights N(0, 0.05): beside conv2's initial scale of 0.1, N(0, 1) vectors would
    swamp the gates at the start of training."""
    torch.manual_seed(0)
    model = build_model(load_spec(SPECS / "pixelcnn_pp_classcond.json"))
    vectors = torch.cat([m.label.weight.flatten() for m in model.modules() if getattr(m, "label", None) is not None and hasattr(m.label, "weight")])
    assert abs(float(vectors.std()) - 0.05) < 0.002


def test_dropout_keeps_f_dropouts_semantics():
    """ops.dropout (a cheaper random-number path on the CPU): each value kept with probability 1 - p and scaled by
    1 / (1 - p), independently; the identity in evaluation; the same draws from the same seed; gradients through the kept values."""
    from arblocks.core.ops import dropout

    x = torch.ones(200, 500, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.3, True)
    kept = y != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.005  # 100,000 draws: 0.005 is over 7 standard deviations
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.3, True), y)
    assert dropout(x, 0.3, False) is x and dropout(x, 0.0, True) is x
