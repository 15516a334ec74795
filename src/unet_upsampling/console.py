"""What the console shows beside a run's own lines: Lightning's chatter and two known third-party warnings left
out, and an error the user caused printed once.

The entry points (train.py, eval.py, predict.py) call :func:`quiet_console` before any work; importing the package
changes nothing. Each filter names one message: every other warning and log line still shows.
"""

from __future__ import annotations

import logging
import warnings

# Lightning's rank-zero info lines that ask nothing of a user.
LIGHTNING_CHATTER = (
    "💡 Tip:",  # advertisements (litlogger, litmodels)
    "GPU available:",  # the device banner: train.log names the device training runs on (callbacks/run_log.py)
    "TPU available:",
    # The schedule's length asked for before fit loads the data (task.total_steps, Lightning's documented pattern).
    "Loading `train_dataloader` to estimate number of stepping batches.",
)

# (message, category, module) of warnings that need no action.
QUIET_WARNINGS = (
    # Lightning's own pytree helper under torch >= 2.10, which deprecated LeafSpec: nothing a user can change.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities\._pytree"),
    # ToTensorV2 on a cached mask, read-only on purpose (data/folder.py); a batch is a copy of it, never written to.
    (r"The given NumPy array is not writable", UserWarning, r"albumentations\.pytorch\.transforms"),
)


class LightningChatter(logging.Filter):
    """Drops the :data:`LIGHTNING_CHATTER` lines from Lightning's rank-zero logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_CHATTER)


CHATTER = LightningChatter()


def quiet_console() -> None:
    """Leaves Lightning's chatter and the :data:`QUIET_WARNINGS` out of the console (and of DataLoader workers, which
    inherit the filters)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(CHATTER)  # once: the same filter object
    for message, category, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


class NotOnConsole(logging.Filter):
    """On the console handler (configs/hydra/default.yaml): leaves out records logged with ``extra={"console":
    False}``, such as a user error written to train.log that Hydra prints on the console itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True)
