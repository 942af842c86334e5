"""The TensorFlow originals' trainable parameter counts at their released configurations, from their own graphs
(run by hand in an environment with tensorflow and the original's code checked out, as original_fixtures.py):

    python benchmarks/original_counts.py pixelcnn_pp_tf --original /tmp/pixel-cnn
    python benchmarks/original_counts.py pixelsnail --original /tmp/pixelsnail
    python benchmarks/original_counts.py image_gpt --original /tmp/image-gpt

Each prints the original's count and the spec that must have it (``arblocks build SPEC --no-check`` prints the
spec's; docs/models.md records both, tests/test_docs.py checks the spec's). The graph is built with the original's
data-dependent initialization on zeros, which creates every variable; no session runs.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from original_fixtures import _tf1, image_gpt_model  # noqa: E402


def pixelcnn_pp_tf(original: Path, tf) -> str:
    sys.path.insert(0, str(original))
    from pixel_cnn_pp.model import model_spec

    model = tf.make_template("model", model_spec)  # train.py's defaults, with which the released model was trained
    model(tf.zeros([1, 32, 32, 3]), None, init=True, dropout_p=0.5, nr_resnet=5, nr_filters=160, nr_logistic_mix=10,
          resnet_nonlinearity="concat_elu")
    return "specs/pixelcnn_pp.json"


def pixelsnail(original: Path, tf) -> str:
    import tensorflow.python.framework.function  # noqa: F401 - the original imports these by their TF1 paths
    import tensorflow.python.ops.variables  # noqa: F401

    sys.path.insert(0, str(original))
    from pixel_cnn_pp.model import h12_noup_smallkey_spec

    model = tf.make_template("model", h12_noup_smallkey_spec)  # the README's CIFAR-10 command, train.py's defaults
    model(tf.zeros([1, 32, 32, 3]), None, init=True, dropout_p=0.5, nr_resnet=4, nr_filters=256, nr_logistic_mix=10,
          resnet_nonlinearity="elu")
    return "specs/pixelsnail.json"


def image_gpt(original: Path, tf) -> str:
    model = image_gpt_model(original)
    hparams = types.SimpleNamespace(n_vocab=512, n_ctx=1024, n_embd=512, n_head=8, n_layer=24,  # iGPT-S (the README)
                                    bert=False, bert_mask_prob=0.15, clf=False)
    model(hparams, tf.zeros([1, 1024], dtype=tf.int32), tf.zeros([1, 10]))
    return "specs/igpt_s.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", choices=["pixelcnn_pp_tf", "pixelsnail", "image_gpt"])
    parser.add_argument("--original", dest="path", type=Path, required=True, help="a checkout of the original's code")
    args = parser.parse_args()
    tf = _tf1()
    spec = {"pixelcnn_pp_tf": pixelcnn_pp_tf, "pixelsnail": pixelsnail, "image_gpt": image_gpt}[args.original](args.path, tf)
    count = sum(v.shape.num_elements() for v in tf.trainable_variables())
    print(f"{args.original}: {count:,} trainable parameters in {len(tf.trainable_variables())} variables; {spec} must have as many")


if __name__ == "__main__":
    main()
