"""The flat-field probe, the label measures (shift disagreement, phase excess), the kernel imbalance and the logit
spectra, at validations of their own cadence."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from unet_upsampling.figures import flat_field_figure, save
from unet_upsampling.files import replaced
from unet_upsampling.loggers import log_figure
from unet_upsampling.measures import FIT, INITIAL, which_validation
from unet_upsampling.metrics import (
    coarser_phases,
    flat_field_response,
    kernel_imbalance,
    periodic_energy_fraction,
    phase_counts,
    phase_excess,
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
    per image and shift, which is why it runs here and not at every validation); ``val/phase_excess{P}_pm``
    for P = 2 and 4 (``phase_excess``, per mille) and the rates of false labels of each class at each phase of
    period 4 (``val/phase_fp_c{c}_{a}{b}_pm``): each batch is predicted once more, cut by an offset of 0 to
    2^depth - 1 px per axis drawn from the run's seed and the batch, so that which content falls on which
    output phase varies between images and seeds (on the uncut images it is the same in every run, and
    an unequal share of edges per phase would read as a phase effect). The label measures run on the
    images of ``label_splits``: the test (``test/...``) at every test, the validation images when the
    probe runs.

    It runs at every ``trainer.validate`` (the one before training, the one of the best checkpoint
    at the end, eval.py's), at the validation after the last step while fitting (the final weights), and at
    every ``every_n_validations``-th validation during fitting (0: none of the others).
    ``seconds`` is the time it took. ``<dir>/artifacts.npz`` holds the flat-field logit maps
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
        label_splits: Sequence[str] = ("val", "test"),
    ):
        self.dir, self.value, self.noise_std, self.spectrum_batches = Path(dir), value, noise_std, spectrum_batches
        self.every_n_validations = every_n_validations
        self.grey_levels, self.normalize = list(grey_levels), normalize
        self.shifts, self.shift_margin, self.label_splits = list(shifts), shift_margin, set(label_splits)
        self.arrays: dict[str, np.ndarray] = {}
        self.spectra: list[torch.Tensor] = []
        self.shift_counts: dict[int, tuple[torch.Tensor, int]] = {}  # shift -> (disagreeing, compared) pixels
        self.phases: tuple[torch.Tensor, torch.Tensor] | None = None  # (false labels, pixels) per phase of period 4
        self.fit_validations = 0
        self.active = False
        self.seconds = 0.0

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

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
        kind = which_validation(trainer, pl_module).kind
        if trainer.state.fn == "fit":
            self.fit_validations += 1
        every = self.every_n_validations
        self.active = kind != FIT or (every > 0 and self.fit_validations % every == 0)
        self.shift_counts, self.phases = {}, None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.shift_counts, self.phases = {}, None

    def count_labels(self, pl_module, batch, logits: torch.Tensor | None, batch_idx: int) -> None:
        """Adds the batch's disagreeing and compared pixels for every shift, and its false labels per phase (on the
        device: no host sync).

        The shift margin shrinks, for images too small to keep it, to what leaves one row and column."""
        image, mask = batch
        labels = None if logits is None else logits.argmax(1)
        for shift in self.shifts:
            margin = min(self.shift_margin, (min(image.shape[-2:]) - shift - 1) // 2)
            disagreeing = shift_disagreement(pl_module.net, image, shift, margin, labels)
            count, compared = self.shift_counts.get(shift, (0, 0))
            self.shift_counts[shift] = count + disagreeing.sum(), compared + disagreeing.numel()
        grid = pl_module.periods[-1]
        seed = (torch.initial_seed() * 1_000_003 + batch_idx) % 2**63
        dy, dx = torch.randint(0, grid, (2,), generator=torch.Generator().manual_seed(seed)).tolist()
        if min(image.shape[-2] - dy, image.shape[-1] - dx) < grid:
            dy = dx = 0  # an image too small to cut keeps its content's phases
        preds = pl_module.net(image[..., dy:, dx:]).argmax(1)
        fp, pixels = phase_counts(preds, mask[..., dy:, dx:], pl_module.num_classes, 4, pl_module.ignore_index)
        self.phases = (fp, pixels) if self.phases is None else (self.phases[0] + fp, self.phases[1] + pixels)

    def log_labels(self, pl_module, split: str) -> None:
        """Per mille of the compared pixels, pooled over the split (each process's share on several)."""
        for shift, (count, compared) in self.shift_counts.items():
            pl_module.log(f"{split}/shift{shift}_disagree_pm", 1000 * count / compared, sync_dist=True)
        if self.phases is None:
            return
        fp, pixels = self.phases
        for period in (2, 4):
            excess = phase_excess(coarser_phases(fp, period), coarser_phases(pixels, period))
            pl_module.log(f"{split}/phase_excess{period}_pm", 1000 * excess, sync_dist=True)
        rates = 1000 * fp.double() / pixels.double().clamp_min(1)
        for (c, a, b), rate in zip(np.ndindex(*rates.shape), rates.flatten(), strict=True):
            pl_module.log(f"{split}/phase_fp_c{c}_{a}{b}_pm", rate, sync_dist=True)

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not self.active:
            return
        with self.timed():
            if batch_idx < self.spectrum_batches and outputs is not None:
                self.spectra.append(radial_power_spectrum(outputs.detach().float().cpu()).mean(dim=(0, 1)))
            if "val" in self.label_splits:
                self.count_labels(pl_module, batch, outputs, batch_idx)

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if "test" in self.label_splits:
            with self.timed():
                self.count_labels(pl_module, batch, outputs, batch_idx)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self.log_labels(pl_module, "test")

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self.active:
            return
        with self.timed():
            self.probe(trainer, pl_module)

    def probe(self, trainer, pl_module) -> None:
        """The flat fields, kernel imbalance and spectra of the weights validated; artifacts.npz, flat_field.png."""
        self.log_labels(pl_module, "val")
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
