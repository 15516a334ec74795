"""The flat-field probe, the kernel imbalance and the logit spectra, at validations of their own cadence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from unet_upsampling.figures import flat_field_figure, save
from unet_upsampling.loggers import log_figure
from unet_upsampling.measures import INITIAL, which_validation
from unet_upsampling.metrics import (
    flat_field_response,
    kernel_imbalance,
    periodic_energy_fraction,
    radial_power_spectrum,
)


class ArtifactProbe(L.Callback):
    """Logs ``val/flat_pef{P}``, ``val/flat_std`` (the response to a constant input ``value`` in normalised
    units), ``val/noise_pef{P}`` (the constant plus noise of std ``noise_std``) and ``val/kernel_imbalance``
    (transposed convolutions only), averaged over the logit maps.

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
    ):
        self.dir, self.value, self.noise_std, self.spectrum_batches = Path(dir), value, noise_std, spectrum_batches
        self.every_n_validations = every_n_validations
        self.arrays: dict[str, np.ndarray] = {}
        self.spectra: list[torch.Tensor] = []
        self.fit_validations = 0
        self.active = False

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

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.active and batch_idx < self.spectrum_batches and outputs is not None:
            self.spectra.append(radial_power_spectrum(outputs.detach().float().cpu()).mean(dim=(0, 1)))

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self.active:
            return
        net = pl_module.net
        flat = flat_field_response(net, net.in_channels, net.receptive_field(), self.value)
        noisy = flat_field_response(net, net.in_channels, net.receptive_field(), self.value, self.noise_std)
        for p in pl_module.periods:
            pl_module.log(f"val/flat_pef{p}", periodic_energy_fraction(flat, p).mean())
            pl_module.log(f"val/noise_pef{p}", periodic_energy_fraction(noisy, p).mean())
        pl_module.log("val/flat_std", flat.std(dim=(-2, -1)).mean())
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
        self.dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(self.dir / "artifacts.npz", **self.arrays)
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
