"""soundctm.train: the shared accelerate training loop, checkpoints, EMA, logging and export.

Public API: `TrainConfig`, `Trainer`, `FitResult` (loop), `ema_key` (EMA names in the model dict),
`export_model` / `load_exported_weights` (inference folders). See `soundctm.train.loop` for the contract.
"""

from soundctm.train.ema import ema_key
from soundctm.train.export import export_model, load_exported_weights
from soundctm.train.loop import FitResult, TrainConfig, Trainer, check_run_dir

__all__ = ["FitResult", "TrainConfig", "Trainer", "check_run_dir", "ema_key", "export_model", "load_exported_weights"]
