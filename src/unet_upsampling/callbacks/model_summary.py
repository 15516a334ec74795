"""The network's table at the start of fitting, with the multiply-adds of one training crop."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import RichModelSummary


class ModelSummary(RichModelSummary):
    """Lightning's rich table (layers, parameters, FLOPs, input and output sizes) for one ``in_channels`` x
    ``crop_size`` x ``crop_size`` image.

    Lightning counts FLOPs (and sizes) only on the module's ``example_input_array``, and shows 0 without
    one; this sets it to a zero image of the training crop's size, when the module has none.
    """

    def __init__(self, crop_size: int, in_channels: int, max_depth: int = 1):
        super().__init__(max_depth=max_depth)
        self.crop_size, self.in_channels = crop_size, in_channels

    def on_fit_start(self, trainer, pl_module) -> None:
        if pl_module.example_input_array is None:
            pl_module.example_input_array = torch.zeros(1, self.in_channels, self.crop_size, self.crop_size)
        super().on_fit_start(trainer, pl_module)
