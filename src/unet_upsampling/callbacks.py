"""Callbacks that leave something to look at in the run directory."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from unet_upsampling.metrics import (
    flat_field_response,
    kernel_imbalance,
    periodic_energy_fraction,
    radial_power_spectrum,
)


class PredictionFigure(L.Callback):
    """After fitting, saves image | ground truth | prediction | error for the first val samples.

    The arrays go to ``<path>.npz`` too (images, masks, preds), for reports.
    """

    def __init__(self, path: str, samples: int = 4):
        self.path, self.samples = Path(path), samples

    @torch.no_grad()
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or not trainer.is_global_zero:
            return
        images, masks = [], []
        for image, mask in trainer.datamodule.val_dataloader():
            images += list(image[: self.samples - len(images)])
            masks += list(mask[: self.samples - len(masks)])
            if len(images) == self.samples:
                break
        pl_module.eval()
        preds = [pl_module(image[None].to(pl_module.device)).argmax(1)[0].cpu() for image in images]
        pl_module.train()
        save_prediction_grid(self.path, images, masks, preds, pl_module.num_classes)
        np.savez_compressed(
            self.path.with_suffix(".npz"),
            images=np.stack([i.mean(0).numpy() for i in images]),
            masks=np.stack([m.numpy() for m in masks]),
            preds=np.stack([p.numpy() for p in preds]),
        )


class ArtifactProbe(L.Callback):
    """At every validation: the flat-field response, its periodic energy, and the kernel imbalance.

    Logs ``val/flat_pef{P}`` and ``val/flat_std`` (constant input ``value``, in normalised units),
    ``val/noise_pef{P}`` (the constant plus noise of std ``noise_std``) and ``val/kernel_imbalance`` (transposed convolutions only),
    averaged over the logit maps. Writes ``<dir>/artifacts.npz``: the flat-field logit maps and the
    radial log power spectrum of the validation logits, at initialisation (the first validation,
    before any optimisation step) and at the latest validation, and ``<dir>/flat_field.png``.
    """

    def __init__(self, dir: str, value: float = 1.0, noise_std: float = 0.1, spectrum_batches: int = 4):
        self.dir, self.value, self.noise_std, self.spectrum_batches = Path(dir), value, noise_std, spectrum_batches
        self.arrays: dict[str, np.ndarray] = {}
        self.spectra: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.spectra = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx < self.spectrum_batches and outputs is not None:
            self.spectra.append(radial_power_spectrum(outputs.detach().float().cpu()).mean(dim=(0, 1)))

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        net = pl_module.net
        flat = flat_field_response(net, net.in_channels, net.depth, self.value)
        noisy = flat_field_response(net, net.in_channels, net.depth, self.value, self.noise_std)
        for p in pl_module.periods:
            pl_module.log(f"val/flat_pef{p}", periodic_energy_fraction(flat, p).mean())
            pl_module.log(f"val/noise_pef{p}", periodic_energy_fraction(noisy, p).mean())
        pl_module.log("val/flat_std", flat.std(dim=(-2, -1)).mean())
        imbalance = kernel_imbalance(net)
        if imbalance is not None:
            pl_module.log("val/kernel_imbalance", imbalance)
        if not trainer.is_global_zero:
            return
        stage = "init" if trainer.global_step == 0 and "init_flat" not in self.arrays else "final"
        self.arrays[f"{stage}_flat"] = flat.numpy()
        if self.spectra:
            self.arrays[f"{stage}_spectrum"] = torch.stack(self.spectra).mean(0).numpy()
        self.dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(self.dir / "artifacts.npz", **self.arrays)
        save_flat_field_figure(
            self.dir / "flat_field.png", {k.split("_")[0]: v for k, v in self.arrays.items() if k.endswith("_flat")}
        )


def save_flat_field_figure(path: Path, maps: dict[str, np.ndarray]) -> None:
    """One panel per entry: the last logit map minus its mean, on a symmetric colour scale."""
    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.4), squeeze=False)
    for ax, (title, logits) in zip(axes[0], maps.items()):
        show_flat_field(ax, logits, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def show_flat_field(ax, logits: np.ndarray, title: str) -> None:
    """Draws logits[-1] - mean with a symmetric scale; the title gives the deviation's range."""
    centred = logits[-1] - logits[-1].mean()
    deviation = float(np.abs(centred).max())
    limit = max(deviation, 1e-6)  # below float32 rounding of the logits the panel stays blank
    ax.imshow(centred, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(f"{title}\n" + (f"±{deviation:.2g}" if deviation > 1e-6 else "flat (<1e-6)"), fontsize=9)
    ax.axis("off")


def save_prediction_grid(path: Path, images, masks, preds, num_classes: int) -> None:
    """One row per sample: image, mask, prediction, and errors in red."""
    fig, axes = plt.subplots(len(images), 4, figsize=(10, 2.6 * len(images)), squeeze=False)
    for row, (image, mask, pred) in zip(axes, zip(images, masks, preds)):
        error = (pred != mask) & (mask >= 0) & (mask < num_classes)
        panels = (image.mean(0), mask.clamp(0, num_classes - 1), pred, error)
        for ax, panel, title in zip(row, panels, ("image", "ground truth", "prediction", "errors")):
            cmap = "gray" if title == "image" else "Reds" if title == "errors" else "viridis"
            ax.imshow(
                panel.numpy(),
                cmap=cmap,
                vmin=None if title == "image" else 0,
                vmax=None if title == "image" else 1 if title == "errors" else num_classes - 1,
                interpolation="nearest",
            )
            ax.set_title(title)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


class FiniteLossGuard(L.Callback):
    """Stops training at the first non-finite loss, before it can reach a checkpoint.

    The training loss is read every ``every_n_steps`` steps (one host sync each time, none in
    between) and the validation loss before every checkpoint; checkpoints written before stay as
    they were.
    """

    def __init__(self, every_n_steps: int = 1):
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0 and not torch.isfinite(outputs["loss"]).item():
            self._stop(trainer, f"the training loss is {outputs['loss'].item()} at step {trainer.global_step}")

    def on_validation_end(self, trainer, pl_module) -> None:
        """Runs before the checkpoint callbacks, which Lightning always calls last."""
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.state.fn == "fit" and not trainer.sanity_checking and loss is not None and not torch.isfinite(loss):
            self._stop(trainer, f"the validation loss is {loss.item()} after step {trainer.global_step}")

    @staticmethod
    def _stop(trainer, what: str) -> None:
        last = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        raise FloatingPointError(
            f"{what} (epoch {trainer.current_epoch}): training stopped. Checkpoints written so far are kept "
            f"(best: {last or 'none yet'}). Lower module.optimizer.lr, set trainer.gradient_clip_val=1.0, or check "
            f"the data for extreme values."
        )
