"""Lightning callbacks of a run: the artifact probe, the prediction figure, the finite-loss guard, and the
progress (rich or plain lines), the run log, and the bookkeeping train.py adds itself (run record, evaluation
timer)."""

from unet_upsampling.callbacks.artifact_probe import ArtifactProbe
from unet_upsampling.callbacks.finite_loss import FiniteLossGuard
from unet_upsampling.callbacks.prediction_figure import PredictionFigure
from unet_upsampling.callbacks.progress import PlainProgress, progress_bar
from unet_upsampling.callbacks.run_log import RunLog
from unet_upsampling.callbacks.run_record import EvaluationTimer, RunRecord

__all__ = [
    "ArtifactProbe",
    "EvaluationTimer",
    "FiniteLossGuard",
    "PlainProgress",
    "PredictionFigure",
    "RunLog",
    "RunRecord",
    "progress_bar",
]
