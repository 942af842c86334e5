"""Training and evaluation: the loop (Adam, EMA, clipping, data-dependent init), checkpoints, numeric precision and
memory format, the process group, and averaging over orderings.

The highest wing below the command line: it may use every other wing.
"""

from .callbacks import Callback, SaveSamples, TensorBoard
from .checkpoint import CheckpointError, load_checkpoint, load_model
from .fit import fit, save_checkpoint
from .loop import EMA, RunResult, TrainConfig, TrainingError, evaluate, evaluate_stages, train

__all__ = ["EMA", "Callback", "CheckpointError", "RunResult", "SaveSamples", "TensorBoard", "TrainConfig", "TrainingError", "evaluate", "evaluate_stages",
           "fit", "load_checkpoint", "load_model", "save_checkpoint", "train"]
