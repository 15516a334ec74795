"""The data pipeline alone: train batches per second from the synthetic and folder sources (PNG files decoded
at every sample, or once with ``data.source.cache=true``), 0/1/2 workers.

Each (source, workers) loader is an endless iterator; blocks of ``--pipeline-batches`` batches
alternate between them round by round (each block first drains what its workers prefetched while
another ran). The rates are compared with what the model consumes in training (the training part's images/s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.config import compose
from bench.timing import median


def endless(loader) -> Iterator:
    while True:
        yield from loader


def write_folder(root: Path, count: int, size: int, num_classes: int) -> None:
    """``count`` synthetic pairs as PNG files under root/images and root/masks (class ids as mask values)."""
    from PIL import Image

    from unet_upsampling.data.synthetic import render

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, mask = render(0, i, size, num_classes)
        Image.fromarray(image[..., 0]).save(root / "images" / f"{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:04d}.png")


def timed_block(it: Iterator, workers: int, batches: int) -> Callable[[], float]:
    def run() -> float:
        for _ in range(2 * workers):  # what the workers prefetched while another candidate ran
            next(it)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        return time.perf_counter() - start

    return run


def loaders(args, base_overrides: list[str], sources: dict[str, list[str]], cfg) -> dict[tuple[str, int], Any]:
    """A train loader per (source, workers); the folder sources keep every override but the synthetic source's."""
    from hydra.utils import instantiate

    keep = [o for o in base_overrides if not o.startswith("data.source.")]
    out = {}
    for source, extra in sources.items():
        for workers in args.workers:
            dcfg = compose(
                [
                    *(base_overrides if source == "synthetic" else keep),
                    *extra,
                    f"data.num_workers={workers}",
                    f"data.crop_size={cfg.data.crop_size}",
                    f"data.batch_size={cfg.data.batch_size}",
                ]
            )
            out[(source, workers)] = instantiate(dcfg.data).train_dataloader()
    return out


def bench_pipeline(args, base_overrides: list[str], workdir: Path, model_images_per_s: float | None) -> dict[str, Any]:
    """Images/s per (source, workers), and the default workers' against ``model_images_per_s`` (None: the
    training part was skipped)."""
    cfg = compose(base_overrides)
    size, classes = cfg.data.source.size, cfg.data.num_classes
    folder = workdir / "folder"
    write_folder(folder, cfg.data.source.train + cfg.data.source.val, size, classes)
    on_disk = ["data=folder", f"data.source.root={folder}"]
    sources = {"synthetic": [], "folder": on_disk, "folder_cached": [*on_disk, "data.source.cache=true"]}
    batches = max(4, args.pipeline_batches)
    loader_map = loaders(args, base_overrides, sources, cfg)
    blocks = {key: timed_block(endless(loader), key[1], batches) for key, loader in loader_map.items()}
    for block in blocks.values():  # warm-up: worker start-up
        block()
    times: dict[Any, list[float]] = {key: [] for key in blocks}
    keys = list(blocks)
    for r in range(args.pipeline_rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[key].append(blocks[key]())
    del blocks, loader_map
    rate = {key: cfg.data.batch_size * batches / median(t) for key, t in times.items()}
    default_workers = int(cfg.data.num_workers)
    out = {
        "image_size": size,
        "crop_size": cfg.data.crop_size,
        "default_workers": default_workers,
        "model_images_per_s": model_images_per_s,
    }
    for source in sources:
        out[source] = {str(w): rate[(source, w)] for w in args.workers}
        default = rate.get((source, default_workers))
        out[f"ratio_{source}_vs_model"] = default / model_images_per_s if default and model_images_per_s else None
    out["ratio_pipeline_vs_model"] = out["ratio_synthetic_vs_model"]
    return out
