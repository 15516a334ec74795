"""``python predict.py ckpt_path=... input=DIR output=DIR``: one mask PNG per input image, any size.

Every input is checked before anything is written; the masks (and the probability maps and
overlays when asked for) are written to a temporary folder beside ``output`` and moved in at the
end, so a failure leaves neither partial masks nor an empty ``output``. An ``output`` that is
``input`` or inside it is refused: the masks would replace the images, or be taken for images by
the next run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from omegaconf import DictConfig
from PIL import Image
from rich.progress import track
from torch import nn

from unet_upsampling.checkpoint import load_checkpoint
from unet_upsampling.data.folder import IMAGE_SUFFIXES, image_files, inspect_image, listed, read_image
from unet_upsampling.errors import CheckpointError, ConfigError, DataError, OutputError
from unet_upsampling.figures import overlay_legend, save
from unet_upsampling.stops import Stops, stop_on_signals
from unet_upsampling.trust import rebuild_eval_transform, stored_scale

log = logging.getLogger(__name__)


def stored_values(mask_values: Any, num_classes: int, source: str) -> np.ndarray:
    """Class id -> the value the training masks stored for it (identity without data.source.mask_values); a stored
    map of anything but integers, or of values a PNG mask cannot hold (0..65535), is refused."""
    lut = np.arange(num_classes, dtype=np.int64)
    if mask_values is None:
        return lut
    pairs = mask_values.items() if isinstance(mask_values, Mapping) else [(None, None)]
    if not all(type(value) is int and type(cls) is int and 0 <= value <= 65535 for value, cls in pairs):
        raise CheckpointError(
            f"{source}: its data.source.mask_values={mask_values!r} is not a map of stored mask values (integers "
            f"0..65535, what a PNG mask holds) to class ids. Refused: the file was not written by this project's "
            f"train.py, or was altered."
        )
    for value, cls in pairs:
        if 0 <= cls < num_classes:
            lut[cls] = value
    return lut


def check_output(source: Path, output: Path) -> None:
    """Refuses, before any work, an ``output`` that is ``input`` or inside it, a file, or in a place that cannot
    hold a folder."""
    if output.resolve() == source.resolve() or source.resolve() in output.resolve().parents:
        raise ConfigError(
            f"output={output} is the input folder {source} or inside it: the masks would overwrite the images or be "
            f"read as images by the next run; choose an output=DIR outside the input folder"
        )
    if output.exists() and not output.is_dir():
        raise OutputError(f"output={output} is a file, not a folder: choose output=DIR, a folder (new or existing)")
    existing = next(p for p in (output.absolute(), *output.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problem = "is a file" if not existing.is_dir() else "is not writable"
        raise OutputError(
            f"output={output} cannot be created: {existing} {problem}; choose output=DIR in a folder you can write to"
        )


def checked_inputs(folder: Path, min_size: int, on_bad_input: str, scale: float = 1.0) -> dict[str, Path]:
    """The images of ``folder`` that can be predicted (decodable, and at least ``min_size`` on a side once resized by
    ``scale``); bad ones stop with a list of all of them, or are skipped."""
    if on_bad_input not in ("error", "skip"):
        raise ConfigError(f"on_bad_input={on_bad_input!r}: choose error or skip")
    files = image_files(folder, "input")  # by stem, the name of their masks
    if not files:
        raise DataError(f"input={folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    problems = {}
    for stem, path in files.items():
        problem, (h, w), _ = inspect_image(path)
        scaled = "" if scale == 1 else f", {int(h * scale)}x{int(w * scale)} after the checkpoint's data.scale={scale}"
        if problem is None and min(int(h * scale), int(w * scale)) < min_size:
            problem = f"{path} is {h}x{w}{scaled}, smaller than {min_size} px, the smallest input of this network"
        if problem:
            problems[stem] = problem
    if problems and on_bad_input == "error":
        raise DataError(
            f"{len(problems)} of {len(files)} input image(s) cannot be predicted, nothing was written:\n"
            f"{listed(list(problems.values()), len(problems))}\nFix or remove them, or set on_bad_input=skip."
        )
    if problems:
        log.warning("on_bad_input=skip: left out %d image(s):\n%s", len(problems), listed(list(problems.values())))
    return {stem: path for stem, path in files.items() if stem not in problems}


def check_tiling(tile_size: int | None, overlap: float, min_size: int) -> None:
    if tile_size is not None and (not isinstance(tile_size, int) or tile_size < min_size):
        raise ConfigError(
            f"tile_size={tile_size!r}: give a side in pixels of at least {min_size} (2**model.depth), e.g. "
            f"tile_size=1024, or tile_size=null for whole images"
        )
    if isinstance(overlap, bool) or not isinstance(overlap, int | float) or not 0 <= overlap < 1:
        raise ConfigError(
            f"tile_overlap={overlap!r}: give the overlap as a fraction of the tile, 0 <= x < 1, e.g. 0.25"
        )


# Why not MONAI's sliding_window_inference, which blends tiles with the same Gaussian (MONAI is in the bench extra
# alone): it clamps the weights to at least 1e-3 (against a division by zero), so along the image's border, where
# every tile's weight is below that, a tile's edge pixels, which lack context, weigh as much as another tile's
# interior. Measured 2026-12-07 (MONAI 1.6.1, a trained depth-2 UNet, 48 and 64 px tiles, 25 % and 50 % overlap):
# its logits differed from the whole image's by up to 0.02 to 0.04, these by 0.0003 to 0.0014. It also pads an image
# narrower than a tile with zeros, an edge the network never saw, where sliding_window shrinks the tile; and MONAI 1.6
# needs torch >= 2.8, above this project's floor of 2.6. What it has that this lacks: several tiles per forward pass
# (sw_batch_size), which a GPU would run faster for small tiles.
def gaussian_window(height: int, width: int) -> torch.Tensor:
    """A tile's blending weights: a Gaussian of sigma = side / 8 about its centre (as nnU-Net and MONAI blend), so
    pixels near a tile's edge, which see less context, count little where another tile covers them."""
    axes = [torch.exp(-0.5 * ((torch.arange(n) - (n - 1) / 2) / (n / 8)) ** 2) for n in (height, width)]
    return axes[0][:, None] * axes[1][None]


def tile_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Tile origins along one side: every tile * (1 - overlap) pixels, the last tile flush with the end."""
    stride = max(1, int(tile * (1 - overlap)))
    return sorted({*range(0, size - tile, stride), size - tile})


def sliding_window(net: nn.Module, image: torch.Tensor, tile: int | None, overlap: float) -> torch.Tensor:
    """Logits (1, K, H, W) of ``image`` (1, C, H, W): whole, or from ``tile`` x ``tile`` tiles that overlap by
    ``overlap`` of their side, each weighted by ``gaussian_window`` and the sum divided by the summed weights."""
    height, width = image.shape[-2:]
    if tile is None or (height <= tile and width <= tile):
        return net(image)
    th, tw = min(tile, height), min(tile, width)
    window = gaussian_window(th, tw).to(image.device)
    total = weight = None
    for y in tile_starts(height, th, overlap):
        for x in tile_starts(width, tw, overlap):
            logits = net(image[..., y : y + th, x : x + tw])
            if total is None:
                total = logits.new_zeros((*logits.shape[:2], height, width))
                weight = logits.new_zeros((height, width))
            total[..., y : y + th, x : x + tw] += logits * window
            weight[y : y + th, x : x + tw] += window
    return total / weight


def class_colours(num_classes: int) -> np.ndarray:
    """(num_classes, 3) RGB in 0..1: colour k of tab10 (tab20 beyond 10 classes) for class k."""
    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return np.asarray(cmap(np.arange(num_classes) % cmap.N))[:, :3]


def overlay(pixels: np.ndarray, classes: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """The image (H, W, 1 or 3) in RGB with each pixel of class k > 0 blended with its ``class_colours`` at
    ``alpha``; class 0 (the background) shows the image."""
    rgb = np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels
    blended = rgb * (1 - alpha) + class_colours(num_classes)[classes] * 255 * alpha
    return np.where(classes[..., None] > 0, blended.round(), rgb).astype(np.uint8)


def predict(cfg: DictConfig) -> list[Path]:
    """Writes the masks (see the module); a signal stops it between images, with nothing written (stops.py)."""
    output = Path(cfg.output).expanduser()
    again = f"nothing was written to output={output}: run the same command again"
    with stop_on_signals(lambda: again, "checking the inputs and reading the checkpoint") as stops:
        return predict_all(cfg, stops)


@torch.no_grad()
def predict_all(cfg: DictConfig, stops: Stops) -> list[Path]:
    source, output = Path(cfg.input).expanduser(), Path(cfg.output).expanduser()
    check_output(source, output)
    if cfg.get("max_image_pixels") is not None:
        Image.MAX_IMAGE_PIXELS = int(cfg.max_image_pixels)
    task, config = load_checkpoint(cfg.ckpt_path)
    tile, overlap = cfg.get("tile_size"), cfg.get("tile_overlap", 0.25)
    check_tiling(tile, overlap, task.net.min_size)
    transform = rebuild_eval_transform(config, source=str(cfg.ckpt_path))
    scale = stored_scale(config, source=str(cfg.ckpt_path))
    files = checked_inputs(source, task.net.min_size, cfg.get("on_bad_input", "error"), scale)
    device = torch.device(
        "cuda" if cfg.device == "auto" and torch.cuda.is_available() else "cpu" if cfg.device == "auto" else cfg.device
    )
    task.to(device)
    stored_source = config["data"].get("source")
    mask_values = stored_source.get("mask_values") if isinstance(stored_source, Mapping) else None
    lut = stored_values(mask_values, task.num_classes, source=str(cfg.ckpt_path))
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    except OSError as error:
        raise OutputError(f"output={output}: cannot write in {output.parent} ({error.strerror or error})") from None
    try:
        for i, (stem, path) in enumerate(track(files.items(), description="predicting"), start=1):
            stops.begin(f"predicting {path.name} (image {i} of {len(files)})")
            pixels = read_image(path, task.net.in_channels)
            image = transform(image=pixels)["image"].float()
            logits = sliding_window(task, image[None].to(device), tile, overlap)
            if logits.shape[-2:] != pixels.shape[:2]:  # a model trained at data.scale != 1: back to the image's size
                logits = F.interpolate(logits, size=pixels.shape[:2], mode="bilinear", align_corners=False)
            save_prediction(staging, stem, pixels, logits, lut, cfg)
        if cfg.get("save_overlay"):
            stored = config["data"].get("class_names")
            names = [str(n) for n in stored] if isinstance(stored, list) else [f"class_{k}" for k in range(len(lut))]
            save(overlay_legend(names, class_colours(task.num_classes)), staging / "overlays" / "legend.png")
        stops.begin(f"moving the masks into output={output}")
        output.mkdir(exist_ok=True)
        written = []
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            (output / path.relative_to(staging)).parent.mkdir(exist_ok=True)
            written.append(Path(shutil.move(path, output / path.relative_to(staging))))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    masks = f"{len(files)} mask" + ("" if len(files) == 1 else "s")
    print(f"wrote {masks} to {output}" + ("" if len(written) == len(files) else f" ({len(written)} files)"))
    return written


def save_prediction(
    staging: Path, stem: str, pixels: np.ndarray, logits: torch.Tensor, lut: np.ndarray, cfg: DictConfig
) -> None:
    """``<stem>.png`` (the classes' stored values) in ``staging``, and the probabilities and overlay when asked for."""
    classes = logits.argmax(1)[0].cpu().numpy()
    Image.fromarray(lut[classes].astype(np.uint8 if lut.max() < 256 else np.uint16)).save(staging / f"{stem}.png")
    if cfg.get("save_probabilities"):
        (staging / "probabilities").mkdir(exist_ok=True)
        for k, p in enumerate(logits.softmax(1)[0].cpu().numpy()):
            Image.fromarray((p * 65535).round().astype(np.uint16)).save(staging / "probabilities" / f"{stem}_c{k}.png")
    if cfg.get("save_overlay"):
        (staging / "overlays").mkdir(exist_ok=True)
        Image.fromarray(overlay(pixels, classes, len(lut))).save(staging / "overlays" / f"{stem}.png")
