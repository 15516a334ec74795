"""The flat-field probe, the shift disagreement, the kernel imbalance and the logit spectra, at validations of their
own cadence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from unet_upsampling.figures import flat_field_figure, save
from unet_upsampling.files import replaced
from unet_upsampling.loggers import log_figure
from unet_upsampling.measures import INITIAL, which_validation
from unet_upsampling.metrics import (
    flat_field_response,
    kernel_imbalance,
    periodic_energy_fraction,
    radial_power_spectrum,
    shift_disagreement,
)


class ArtifactProbe(L.Callback):
    """Logs ``val/flat_pef{P}``, ``val/flat_std`` (the response to a constant input ``value`` in normalised
    units), ``val/noise_pef{P}`` (the constant plus noise of std ``noise_std``) and ``val/kernel_imbalance``
    (transposed convolutions only), averaged over the logit maps; ``val/flat_std_grey{G}`` and
    ``val/flat_pef_grey{G}`` for each grey level g in ``grey_levels`` (a fraction of the pixel range,
    normalised as the data are: ``normalize``, else the DataModule's own; G = 100 g), the PEF at
    period 2^depth, which counts every period the UNet can imprint; and ``val/shift{S}_disagree_pm`` for
    each shift s in ``shifts``: the per mille of validation pixels whose label changes when the image is shifted by s px
    (``shift_disagreement``, ``shift_margin`` px of the overlap's border left out; one more forward pass
    per image and shift, which is why it runs here and not at every validation). The shift disagreement
    is measured at every test too (``test/shift{S}_disagree_pm``).

    It runs at every ``trainer.validate`` (the one before training and the one of the best checkpoint
    at the end, whose values reach metrics.json) and at every ``every_n_validations``-th validation
    during fitting (0: never during fitting). ``<dir>/artifacts.npz`` holds the flat-field logit maps
    and the radial log power spectrum of the validation logits at initialisation and at the latest
    probe; ``<dir>/flat_field.png`` shows the responses. Its arrays travel in checkpoints, so a
    resumed run keeps the initial ones.
    """

    def __init__(
        self,
        dir: str,
        value: float = 1.0,
        noise_std: float = 0.1,
        spectrum_batches: int = 4,
        every_n_validations: int = 0,
        grey_levels: Sequence[float] = (),
        normalize: Mapping[str, float | Sequence[float]] | None = None,
        shifts: Sequence[int] = (),
        shift_margin: int = 16,
    ):
        self.dir, self.value, self.noise_std, self.spectrum_batches = Path(dir), value, noise_std, spectrum_batches
        self.every_n_validations = every_n_validations
        self.grey_levels, self.normalize = list(grey_levels), normalize
        self.shifts, self.shift_margin = list(shifts), shift_margin
        self.arrays: dict[str, np.ndarray] = {}
        self.spectra: list[torch.Tensor] = []
        self.shift_counts: dict[int, tuple[torch.Tensor, int]] = {}  # shift -> (disagreeing, compared) pixels
        self.fit_validations = 0
        self.active = False

    def grey_inputs(self, datamodule: Any = None) -> dict[int, float | list[float]]:
        """Each grey level (key: 100 g) in the network's input units, normalised as the data are."""
        normalize = self.normalize or getattr(datamodule, "normalize", None) or {"mean": 0.5, "std": 0.25}
        mean, std = (torch.as_tensor(normalize[k], dtype=torch.float32) for k in ("mean", "std"))
        return {round(100 * g): ((g - mean) / std).tolist() for g in self.grey_levels}

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.spectra = []
        self.active = False
        if trainer.sanity_checking:
            return
        if trainer.state.fn != "fit":
            self.active = True
        else:
            self.fit_validations += 1
            self.active = self.every_n_validations > 0 and self.fit_validations % self.every_n_validations == 0
        self.shift_counts = {}

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.shift_counts = {}

    def count_shift_disagreement(self, pl_module, batch) -> None:
        """Adds the batch's disagreeing and compared pixels for every shift (on the device: no host sync).

        The margin shrinks, for images too small to keep it, to what leaves one row and column."""
        image = batch[0]
        for shift in self.shifts:
            margin = min(self.shift_margin, (min(image.shape[-2:]) - shift - 1) // 2)
            disagreeing = shift_disagreement(pl_module.net, image, shift, margin)
            count, compared = self.shift_counts.get(shift, (0, 0))
            self.shift_counts[shift] = count + disagreeing.sum(), compared + disagreeing.numel()

    def log_shift_disagreement(self, pl_module, split: str) -> None:
        """Per mille of the compared pixels, pooled over the split (each process's share on several)."""
        for shift, (count, compared) in self.shift_counts.items():
            pl_module.log(f"{split}/shift{shift}_disagree_pm", 1000 * count / compared, sync_dist=True)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not self.active:
            return
        if batch_idx < self.spectrum_batches and outputs is not None:
            self.spectra.append(radial_power_spectrum(outputs.detach().float().cpu()).mean(dim=(0, 1)))
        self.count_shift_disagreement(pl_module, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.count_shift_disagreement(pl_module, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self.log_shift_disagreement(pl_module, "test")

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self.active:
            return
        self.log_shift_disagreement(pl_module, "val")
        net = pl_module.net
        flat = flat_field_response(net, net.in_channels, net.receptive_field(), self.value)
        noisy = flat_field_response(net, net.in_channels, net.receptive_field(), self.value, self.noise_std)
        for p in pl_module.periods:
            pl_module.log(f"val/flat_pef{p}", periodic_energy_fraction(flat, p).mean())
            pl_module.log(f"val/noise_pef{p}", periodic_energy_fraction(noisy, p).mean())
        pl_module.log("val/flat_std", flat.std(dim=(-2, -1)).mean())
        for grey, value in self.grey_inputs(trainer.datamodule).items():
            response = flat_field_response(net, net.in_channels, net.receptive_field(), value)
            pl_module.log(f"val/flat_std_grey{grey}", response.std(dim=(-2, -1)).mean())
            pl_module.log(f"val/flat_pef_grey{grey}", periodic_energy_fraction(response, pl_module.periods[-1]).mean())
        imbalance = kernel_imbalance(net)
        if imbalance is not None:
            pl_module.log("val/kernel_imbalance", imbalance)
        if not trainer.is_global_zero:
            return
        validation = which_validation(trainer, pl_module)
        stage = "init" if validation.kind == INITIAL else "final"
        self.arrays[f"{stage}_flat"] = flat.numpy()
        if self.spectra:
            self.arrays[f"{stage}_spectrum"] = torch.stack(self.spectra).mean(0).numpy()
        with replaced(self.dir / "artifacts.npz") as file:
            np.savez_compressed(file, **self.arrays)
        titles = {"init": "before training", "final": f"step {validation.step}"}
        maps = {titles[k.split("_")[0]]: v for k, v in self.arrays.items() if k.endswith("_flat")}
        figure = flat_field_figure(maps, getattr(trainer.datamodule, "class_names", ()), self.value)
        save(figure, self.dir / "flat_field.png")
        log_figure(trainer.loggers, "artifacts/flat_field", figure, trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "arrays": {k: torch.from_numpy(v) for k, v in self.arrays.items()},
            "fit_validations": self.fit_validations,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.arrays = {k: v.numpy() for k, v in state_dict["arrays"].items()}
        self.fit_validations = state_dict["fit_validations"]
