"""``python predict.py ckpt_path=... input=DIR output=DIR``: one mask PNG per input image, any size."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from rich.progress import track

from unet_upsampling.checkpoint import load_checkpoint
from unet_upsampling.data.folder import image_files, read_image


def stored_values(mask_values: dict | None, num_classes: int) -> np.ndarray:
    """Class id -> the value the training masks stored for it (identity without data.mask_values)."""
    lut = np.arange(num_classes, dtype=np.int64)
    for value, cls in (mask_values or {}).items():
        if 0 <= int(cls) < num_classes:
            lut[int(cls)] = int(value)
    return lut


@torch.no_grad()
def predict(cfg: DictConfig) -> list[Path]:
    module, config = load_checkpoint(cfg.ckpt_path)
    device = torch.device(
        "cuda" if cfg.device == "auto" and torch.cuda.is_available() else "cpu" if cfg.device == "auto" else cfg.device
    )
    module.to(device)
    data = config["data"]
    transform = instantiate(data["eval_transform"])
    lut = stored_values(data.get("mask_values"), module.num_classes)
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    files = image_files(Path(cfg.input))
    if not files:
        raise FileNotFoundError(f"no images in input={cfg.input}")
    written = []
    for stem, path in track(files.items(), description="predicting"):
        image = transform(image=read_image(path, data["in_channels"]))["image"].float()
        classes = module(image[None].to(device)).argmax(1)[0].cpu().numpy()
        target = output / f"{stem}.png"
        Image.fromarray(lut[classes].astype(np.uint8 if lut.max() < 256 else np.uint16)).save(target)
        written.append(target)
    print(f"wrote {len(written)} masks to {output}")
    return written


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
