"""``python predict.py ckpt_path=... input=DIR output=DIR``: one mask PNG per input image, any size.

Every input is checked before anything is written; the masks are written to a temporary folder
beside ``output`` and moved in at the end, so a failure leaves neither partial masks nor an empty
``output``. An ``output`` that is ``input`` is refused: the masks would replace the images.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from rich.progress import track

from unet_upsampling.builders import rebuild_eval_transform
from unet_upsampling.checkpoint import load_checkpoint
from unet_upsampling.data.folder import IMAGE_SUFFIXES, image_files, inspect_image, listed, read_image
from unet_upsampling.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def stored_values(mask_values: dict | None, num_classes: int) -> np.ndarray:
    """Class id -> the value the training masks stored for it (identity without data.source.mask_values)."""
    lut = np.arange(num_classes, dtype=np.int64)
    for value, cls in (mask_values or {}).items():
        if 0 <= int(cls) < num_classes:
            lut[int(cls)] = int(value)
    return lut


def checked_inputs(folder: Path, min_size: int, on_bad_input: str) -> dict[str, Path]:
    """The images of ``folder`` that can be predicted; bad ones stop with a list of all of them, or are skipped."""
    if on_bad_input not in ("error", "skip"):
        raise ConfigError(f"on_bad_input={on_bad_input!r}: choose error or skip")
    files = image_files(folder, key="input")
    if not files:
        raise DataError(f"input={folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    problems = {}
    for stem, path in files.items():
        problem, (h, w), _ = inspect_image(path)
        if problem is None and min(h, w) < min_size:
            problem = f"{path} is {h}x{w}, smaller than {min_size} px, the smallest input of this network"
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


@torch.no_grad()
def predict(cfg: DictConfig) -> list[Path]:
    source, output = Path(cfg.input).expanduser(), Path(cfg.output).expanduser()
    if source.resolve() == output.resolve():
        raise ConfigError(
            f"output={cfg.output} is the input folder: the masks would overwrite the images; choose another output=DIR"
        )
    task, config = load_checkpoint(cfg.ckpt_path)
    files = checked_inputs(source, task.net.min_size, cfg.get("on_bad_input", "error"))
    device = torch.device(
        "cuda" if cfg.device == "auto" and torch.cuda.is_available() else "cpu" if cfg.device == "auto" else cfg.device
    )
    task.to(device)
    transform = rebuild_eval_transform(config, source=str(cfg.ckpt_path))
    data = config["data"]
    lut = stored_values((data.get("source") or {}).get("mask_values"), task.num_classes)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        for stem, path in track(files.items(), description="predicting"):
            pixels = read_image(path, data["in_channels"])
            image = transform(image=pixels)["image"].float()
            logits = task(image[None].to(device))
            if logits.shape[-2:] != pixels.shape[:2]:  # a model trained at data.scale != 1: back to the image's size
                logits = F.interpolate(logits, size=pixels.shape[:2], mode="bilinear", align_corners=False)
            classes = logits.argmax(1)[0].cpu().numpy()
            Image.fromarray(lut[classes].astype(np.uint8 if lut.max() < 256 else np.uint16)).save(
                staging / f"{stem}.png"
            )
        output.mkdir(exist_ok=True)
        written = [Path(shutil.move(staging / f"{stem}.png", output / f"{stem}.png")) for stem in files]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {len(written)} masks to {output}")
    return written


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
