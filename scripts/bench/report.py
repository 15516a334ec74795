"""The report: the targets the numbers are held to, the printed tables, the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PER_FLOP_NOTE = (
    "per image = ratio of images/s (what a user waits for); per FLOP = ratio of images/s x training FLOPs per "
    "image (speed at equal work; the fair one where the blocks differ in work, e.g. bilinear_conv does 34 % more "
    "than MONAI's nontrainable block by design)"
)


def fmt(value, spec=".1f", none="-"):
    return none if value is None else format(value, spec)


def fmt_spread(s: dict | None, spec=".2f") -> str:
    return "-" if s is None else f"{s['median']:{spec}} [{s['min']:{spec}}–{s['max']:{spec}}]"


# --------------------------------------------------------------------------------------------------
# targets


def target(value, threshold) -> dict[str, Any]:
    return {"value": value, "threshold": threshold, "holds": None if value is None else value >= threshold}


def repeated_claim(training: dict[str, Any], field: str, threshold: float) -> dict[str, Any]:
    """``field`` (a ratio's spread) >= threshold: for the median of every mode, and in every repeat of each mode."""
    spreads = {mode: row[field] for mode, row in training.items() if row.get(field)}
    claim = target(min((s["median"] for s in spreads.values()), default=None), threshold)
    lowest = min((s["min"] for s in spreads.values()), default=None)
    claim |= {
        "min_over_repeats": lowest,
        "holds_every_repeat": None if lowest is None else lowest >= threshold,
        "modes_every_repeat": [m for m, s in spreads.items() if s["min"] >= threshold],
        "modes_not_every_repeat": [m for m, s in spreads.items() if s["min"] < threshold],
    }
    return claim


def targets(report: dict[str, Any]) -> dict[str, Any]:
    lt, pl = report["lightning"], report["pipeline"]
    syncs = lt and lt["train_py"]["host_syncs_per_step_median"]
    peer = {}
    if report["training"]:
        key = report["settings"]["pairing"]
        peer = {
            f"ours_vs_{key}_min": repeated_claim(report["training"], f"ratio_ours_vs_{key}_spread", 1.0),
            f"ours_vs_{key}_per_flop_min": repeated_claim(
                report["training"], f"ratio_ours_vs_{key}_per_flop_spread", 1.0
            ),
        }
    return peer | {
        "train_py_vs_plain": target(lt and lt["ratio_train_py_vs_plain_step"], 0.9),
        "pipeline_vs_model": target(pl and pl["ratio_pipeline_vs_model"], 3.0),
        "no_per_step_sync": {"value": syncs, "threshold": 0, "holds": None if syncs is None else syncs == 0},
    }


# --------------------------------------------------------------------------------------------------
# tables


def header_lines(report: dict[str, Any]) -> list[str]:
    m, s, lim = report["machine"], report["settings"], report["machine_limit"]
    load = m.get("load_average")
    machine = (
        f"machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"device {m['device']}{' ' + m['gpu'] if m['gpu'] else ''}, MONAI {m.get('monai', 'absent')}"
        + (f", load average {load[0]:.2f} at start" if load else "")
    )
    if not lim:
        return [machine]
    conv = lim["kernels"][lim["conv_level"]]
    gemm = lim["kernels"]["gemm"]
    return [
        machine,
        f"machine limit (interleaved with the training steps): fp32 GEMM {gemm['size']}x{gemm['size']} "
        f"{lim['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s; 3x3 conv forward+backward {lim['conv_flops_per_s'] / 1e9:.1f} "
        f"GFLOP/s ({conv['channels']} channels at {conv['side']}x{conv['side']}, batch {conv['batch']}, "
        f"{'channels_last' if conv['channels_last'] else 'contiguous'}; the faster of the two widest levels)",
        f"settings: {s['image_size']}x{s['image_size']} crops, batch {s['batch_size']}, base_channels "
        f"{s['base_channels']}, depth {s['depth']}; medians of {s['steps']} interleaved rounds after "
        f"{s['warmup']} warm-up, {s['repeats']} repeat(s)",
    ]


def training_lines(report: dict[str, Any]) -> list[str]:
    s, training = report["settings"], report["training"]
    if not training:
        return []
    key, peer, network = s["pairing"], s["peer"], s["peer_network"]
    first = training[next(iter(training))]
    lines = [
        "",
        f"ours = our {s.get('network', 'UNet')} in the configured layout ({first['ours_layout']}, "
        f"model.channels_last), {peer} = {network} "
        f"as it ships (contiguous), same widths, loss, optimiser and batch; ratios ours / {peer}: median [min–max] "
        f"over {s['repeats']} repeat(s); {PER_FLOP_NOTE}",
        "",
        f"| mode | ours img/s | {peer} img/s (upsample) | ours / {peer} per image (img/s ratio) "
        f"| ours / {peer} per FLOP (FLOP/s ratio) "
        "| same layout per image: contiguous, channels_last | ours channels_last / contiguous "
        f"| peak MB ours / {peer} | train GFLOP/img ours / {peer} | GFLOP/s ours / {peer} "
        f"| of machine conv FLOP/s ours / {peer} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in training.items():
        p = r[key]
        lines.append(
            f"| {mode} | {fmt(r['ours']['images_per_s'])} | {fmt(p and p['images_per_s'])} "
            f"({r[f'{key}_upsample'] or '-'}) | {fmt_spread(r[f'ratio_ours_vs_{key}_spread'])} | "
            f"{fmt_spread(r[f'ratio_ours_vs_{key}_per_flop_spread'])} | "
            f"{fmt(r[f'ratio_ours_vs_{key}_contiguous'], '.2f')}, "
            f"{fmt(r[f'ratio_ours_vs_{key}_channels_last'], '.2f')} "
            f"| {fmt(r['ratio_channels_last_vs_contiguous'], '.2f')} | "
            f"{fmt(r['ours']['peak_memory_mb'], '.0f')} / {fmt(p and p['peak_memory_mb'], '.0f')} | "
            f"{fmt(r['train_gflops_per_image'], '.2f')} / {fmt(r[f'{key}_train_gflops_per_image'], '.2f')} | "
            f"{fmt(r['train_gflop_per_s'])} / {fmt(r[f'{key}_train_gflop_per_s'])} | "
            f"{fmt(r['machine_conv_fraction'], '.0%')} / {fmt(r[f'{key}_machine_conv_fraction'], '.0%')} |"
        )
    return lines


def roofline_lines(report: dict[str, Any]) -> list[str]:
    """The device's ceilings and each mode's step under them (scripts/bench/ceilings.py)."""
    c = report["machine_limit"] and report["machine_limit"]["ceilings"]
    if not c:
        return []
    rates = ", ".join(f"{name} {rate / 1e12:.3g}" for name, rate in c["matmul_flops_per_s"].items())
    lines = [
        "",
        f"device ceilings ({c['device']}): {c['matmul_size']}^3 matrix product TFLOP/s {rates}; copy of "
        f"{c['copy_mb']:g} MiB {c['copy_bytes_per_s'] / 1e9:.0f} GB/s; launch floor {c['launch_s'] * 1e6:.1f} us",
        "| mode | step ms | GFLOP/step | MB read/step | launches | FLOP/byte (ridge) | TFLOP/s (of matrix rate) "
        "| GB/s (of copy) | floors ms: compute, memory, launch | bound (its share of the step) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in report["training"].items():
        r = row.get("roofline")
        if not r:
            continue
        f = r["floor_s"]
        lines.append(
            f"| {mode} | {r['step_s'] * 1e3:.2f} | {r['flops'] / 1e9:.1f} | {r['bytes'] / 2**20:.0f} | {r['launches']} "
            f"| {r['intensity_flops_per_byte']:.0f} ({r['ridge_flops_per_byte']:.0f}) "
            f"| {r['achieved_flops_per_s'] / 1e12:.3g} ({r['compute_fraction']:.1%} of {r['precision']}) "
            f"| {r['achieved_bytes_per_s'] / 1e9:.3g} ({r['memory_fraction']:.1%}) "
            f"| {f['compute'] * 1e3:.2f}, {f['memory'] * 1e3:.2f}, {f['launch'] * 1e3:.2f} "
            f"| {r['bound']} ({r['bound_fraction']:.0%}) |"
        )
    return lines


def lightning_lines(lt: dict[str, Any] | None) -> list[str]:
    if not lt:
        return []
    p, t = lt["plain"], lt["train_py"]
    return [
        "",
        f"train.py vs plain PyTorch loop (upsample={lt['mode']}, {lt['runs']} runs of "
        f"{lt['epochs_per_run']} epochs each, alternating; validation once per epoch):",
        "| | step ms | img/s | train epoch s | epoch incl. val + checkpoints s | start-up s "
        "| host syncs/step (median, max) |",
        "|---|---|---|---|---|---|---|",
        f"| plain loop | {p['step_ms']:.0f} | {p['images_per_s']:.1f} | {p['epoch_s']:.2f} | - | - | - |",
        f"| train.py | {t['step_ms']:.0f} | {t['images_per_s']:.1f} | {t['epoch_s']:.2f} | "
        f"{t['epoch_with_val_and_checkpoints_s']:.2f} | {t['startup_s']:.1f} | "
        f"{t['host_syncs_per_step_median']:.0f}, {t['host_syncs_per_step_max']} "
        f"(logging every {t['log_every_n_steps']} steps) |",
        f"ratio train.py / plain: {lt['ratio_train_py_vs_plain_step']:.2f} per step, "
        f"{lt['ratio_train_py_vs_plain_epoch']:.2f} per epoch",
    ]


def throughput_lines(tp: dict[str, Any] | None) -> list[str]:
    if not tp:
        return []
    first = next(iter(tp["sweeps"].values()))["new"][0]
    per_core = tp["measure"] == "study_runs_per_core_hour"
    lines = [
        "",
        f"study throughput: N train.py runs side by side (joblib launcher), {first['steps']} steps each, projected "
        f"to {first['study_steps']}-step runs (wall + remaining steps x the steady step, validations in the wall); "
        + ", ".join(f"{side} = {path}" for side, path in tp["checkouts"].items()),
        "| N | checkout | round | wall s | step ms | start-up s | img/s together | cores | study run s "
        "| study runs per hour | per core-hour |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, by_side in tp["sweeps"].items():
        for side, rows in by_side.items():
            for r, row in enumerate(rows):
                lines.append(
                    f"| {n} | {side} | {r} | {row['wall_s']:.1f} | {row['step_ms']:.1f} | {row['startup_s']:.1f} "
                    f"| {row['images_per_s_together']:.0f} | {fmt(row['cores'], 'd')} | {row['study_run_wall_s']:.0f} "
                    f"| {row['study_runs_per_hour']:.2f} | {fmt(row['study_runs_per_core_hour'], '.2f')} |"
                )
    for n, medians in tp["median"].items():
        line = f"N = {n}: median study runs per {'core-hour' if per_core else 'hour'} " + ", ".join(
            f"{side} {value:.2f}" for side, value in medians.items()
        )
        if tp["ratio_new_vs_old"]:
            line += f"; new / old {tp['ratio_new_vs_old'][n]:.3f} (each checkout runs its own experiment config)"
        lines.append(line)
    return lines


def pipeline_lines(pl: dict[str, Any] | None, mode: str) -> list[str]:
    if not pl:
        return []
    workers = list(pl["synthetic"])
    lines = [
        "",
        f"data pipeline alone (img/s, {pl['crop_size']} px crops of {pl['image_size']} px images; "
        f"default data.num_workers={pl['default_workers']})",
        "| source | " + " | ".join(f"{w} workers" for w in workers) + " | default / model consumption |",
        "|---|" + "---|" * (len(workers) + 1),
    ]
    for source in ("synthetic", "folder", "folder_cached"):
        lines.append(
            f"| {source} | "
            + " | ".join(f"{pl[source][w]:.0f}" for w in workers)
            + f" | {fmt(pl[f'ratio_{source}_vs_model'], '.1f')} |"
        )
    lines.append(f"model consumption (training, upsample={mode}): {fmt(pl['model_images_per_s'])} img/s")
    return lines


def inference_lines(inf: dict[str, Any] | None) -> list[str]:
    if not inf:
        return []
    return [
        "",
        f"inference, predict.py path, {inf['image_size']}x{inf['image_size']}, one image at a time "
        f"(upsample={inf['mode']}): "
        + ", ".join(f"{k} {v:.2f} img/s" for k, v in inf["images_per_s"].items())
        + f"; channels_last / contiguous {inf['ratio_channels_last_vs_contiguous']:.2f}, fused BN / "
        f"unfused {inf['ratio_fused_bn_vs_contiguous']:.2f} (contiguous), "
        f"{inf['ratio_channels_last_fused_bn_vs_channels_last']:.2f} (channels_last)",
    ]


def verdict(holds: bool | None) -> str:
    return {True: "holds", False: "MISSED", None: "n/a"}[holds]


def target_lines(tg: dict[str, Any]) -> list[str]:
    lines = ["", "targets:"]
    for name, t in tg.items():
        line = f"- {name}: {fmt(t['value'], '.2f')} ({'==' if name == 'no_per_step_sync' else '>='} {t['threshold']}) "
        line += verdict(t["holds"])
        if "holds_every_repeat" in t:
            line += (
                f"; in every repeat (lowest {fmt(t['min_over_repeats'], '.2f')}): {verdict(t['holds_every_repeat'])}"
                f" — holds in every repeat for {', '.join(t['modes_every_repeat']) or 'no mode'}"
                f"; not for {', '.join(t['modes_not_every_repeat']) or 'none'}"
            )
        lines.append(line)
    return lines


def table(report: dict[str, Any]) -> str:
    lines = [
        *header_lines(report),
        *training_lines(report),
        *roofline_lines(report),
        *lightning_lines(report["lightning"]),
        *throughput_lines(report["throughput"]),
        *pipeline_lines(report["pipeline"], report["lightning_mode"]),
        *inference_lines(report["inference"]),
        *target_lines(report["targets"]),
    ]
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2))
