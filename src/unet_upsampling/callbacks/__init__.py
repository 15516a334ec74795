"""Lightning callbacks of a run: the artifact probe, the prediction figure, the finite-loss guard, and the
bookkeeping train.py adds itself (run record, evaluation timer)."""

from unet_upsampling.callbacks.artifact_probe import ArtifactProbe
from unet_upsampling.callbacks.finite_loss import FiniteLossGuard
from unet_upsampling.callbacks.prediction_figure import PredictionFigure
from unet_upsampling.callbacks.run_record import EvaluationTimer, RunRecord

__all__ = ["ArtifactProbe", "EvaluationTimer", "FiniteLossGuard", "PredictionFigure", "RunRecord"]
