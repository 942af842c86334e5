"""Training and evaluation: the loop (Adam, EMA, clipping, data-dependent init), checkpoints, numeric precision and
memory format, the process group, and averaging over orderings.

The highest wing below the command line: it may use every other wing.
"""

from .checkpoint import CheckpointError, load_checkpoint, load_model
from .loop import EMA, RunResult, TrainConfig, TrainingError, evaluate, evaluate_stages, train

__all__ = ["EMA", "CheckpointError", "RunResult", "TrainConfig", "TrainingError", "evaluate", "evaluate_stages", "load_checkpoint", "load_model", "train"]
