"""Feature-extraction benchmark on real images: naive loop vs ``featurelab.features.extract``.

For each backbone (VGG16 relu7, ResNet-18 layer4, MobileNetV3-Large features; random weights,
which run exactly as fast as pretrained ones) and each real image set in ``../shared/realdata``
(15 Scene test, the PetImages sample, CIFAR-10 test as JPEGs), one run side by side:

(a) naive    the loop of the course seeds: ``ImageFolder(weights.transforms())``,
             ``DataLoader(batch_size=64)``, no workers, ``model(images)`` under ``no_grad``,
             float32, NCHW.
(b) extract  ``features.extract(model, dataset, cache=False, progress=False)``, defaults
             (CIFAR-10: 32x32 decode, ``resize=224`` on the device, as the notebooks do).
(c) ceiling  the model alone on pre-decoded input tensors already in memory (on the device),
             run as (b) runs it: batch norm folded into the convolutions
             (``features.batchnorm_folded``; resnet18, mobilenet), memory format, batch size,
             precision. "unfolded": the same with the model as given (no folding).
(d) cache    ``extract`` into an empty cache folder (miss: computes and writes), then again
             with the same model object (hit: weight hashing, the remembered probe, the
             checksummed memory-mapped read) and with a deep copy of the model ("cold hit": a
             new object, so the fingerprint probe runs again, as in a restarted kernel or a
             grading run).
(e) alt      ``extract(amp=True)``: bfloat16 autocast (float16 on GPUs without bfloat16),
             with the largest difference to (b) relative to the largest feature value, and
             the relative L2 error.
    data     extract's data path alone (the model replaced by a mean over pixels): decode,
             transform, collate, resize. When loading and the model take turns on the same
             cores, (b) cannot beat the bound 1 / (1/ceiling + 1/data).
    1 worker (CPU) extract with ``num_workers=1``: a decoding process next to the model.

Prints a table and, with ``--json PATH``, writes every number plus the machine description.

    .venv/bin/python bench/extract.py                        # CPU, 200 images (VGG16: 64)
    .venv/bin/python bench/extract.py --limit 64 --models resnet18 --datasets scene15
    .venv/bin/python bench/extract.py --device cuda --limit 2000 --vgg-limit 2000 --json gpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import v2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a fresh clone without an install
sys.path.insert(0, str(REPO))  # autograder.checks.references (instructor side)

from autograder.checks import references  # noqa: E402
from featurelab import backbones, cache, features  # noqa: E402
from featurelab.device import auto_device  # noqa: E402

MODELS = {"vgg16": "relu7", "resnet18": "layer4", "mobilenet_v3_large": "features"}
DATASETS = {
    "scene15": "scene15/test",
    "petimages": "petimages_sample/PetImages",
    "cifar10": "cifar10_test_jpg/test",
}


def realdata_dir(given: str | None) -> Path:
    path = Path(
        given or os.environ.get("FEATURELAB_REALDATA") or REPO.parent / "shared" / "realdata"
    )
    if not path.is_dir():
        sys.exit(f"real images not found at {path}: pass --realdata or set FEATURELAB_REALDATA")
    return path


def spread(n_total: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over ``range(n_total)`` (every class is represented)."""
    if limit >= n_total:
        return list(range(n_total))
    return [round(i * (n_total - 1) / (limit - 1)) for i in range(limit)] if limit > 1 else [0]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device: torch.device):
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - start


def cifar_small_transform(weights) -> v2.Compose:
    """What the CIFAR-10 notebook uses with ``resize=224``: decode and normalise at 32x32."""
    preset = weights.transforms()
    return v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=preset.mean, std=preset.std),
        ]
    )


def naive_loop(model, dataset) -> torch.Tensor:
    outputs = []
    with torch.no_grad():
        for images, _labels in DataLoader(dataset, batch_size=64):
            outputs.append(model(images))
    return torch.cat(outputs)


def ceiling_loop(model, inputs: torch.Tensor, device, batch_size, amp_dtype) -> None:
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    )
    with torch.inference_mode(), autocast:
        for start in range(0, len(inputs), batch_size):
            model(inputs[start : start + batch_size])


def relative_differences(approx: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """(max |a - e| / max |e|, ||a - e||_2 / ||e||_2)."""
    diff = (approx - exact).abs()
    scale = exact.abs().max().clamp_min(1e-12)
    return (diff.max() / scale).item(), (diff.norm() / exact.norm().clamp_min(1e-12)).item()


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


class DataOnly(torch.nn.Module):
    """A stand-in model that costs nothing: times extract's data path alone."""

    def forward(self, images):
        return images.mean(dim=(2, 3))


def bench_pair(model_name, dataset_name, root, limit, device, batch_size, repeat, do_alt, log):
    point = MODELS[model_name]
    full, weights, _ = backbones.load_model(model_name, pretrained=False)
    model = references.cut(full, model_name, point).to(device)
    preset = weights.transforms()
    naive_set = datasets.ImageFolder(root, transform=preset)
    indices = spread(len(naive_set), limit)
    naive_data = Subset(naive_set, indices)
    resize = None
    fast_data = naive_data
    if dataset_name == "cifar10":
        fast_data = Subset(
            datasets.ImageFolder(root, transform=cifar_small_transform(weights)), indices
        )
        resize = 224
    n = len(indices)
    for index in indices:  # warm the page cache: every variant reads files from memory
        Path(naive_set.samples[index][0]).read_bytes()
    row = {
        "model": f"{model_name} {point}",
        "dataset": dataset_name,
        "images": n,
        "device": device.type,
        "repeat": repeat,
        "load_before": load_average(),
    }
    amp_dtype = features.resolve_amp(None, device)
    row["extract_precision"] = str(amp_dtype or torch.float32).replace("torch.", "")
    inputs = torch.stack([naive_data[i][0] for i in range(n)]).to(device)

    def run_extract(target=model, **kwargs):
        return features.extract(
            target,
            fast_data,
            batch_size=batch_size,
            device=device,
            resize=resize,
            progress=False,
            **kwargs,
        )

    # extract runs a copy with batch norm folded into the convolutions (resnet18, mobilenet):
    # the ceiling is that same model alone; "unfolded" is the model as given.
    runner = features.batchnorm_folded(model)
    row["batchnorm_folded"] = runner is not model

    def ceiling(net=runner):
        with features._channels_last(net, device.type in ("cpu", "cuda")):
            ceiling_loop(net, inputs, device, batch_size, amp_dtype)

    def naive():
        if device.type == "cpu":
            return naive_loop(model, naive_data)
        outputs = []  # on a GPU the seeds move each batch themselves
        with torch.no_grad():
            for images, _ in DataLoader(naive_data, batch_size=64):
                outputs.append(model(images.to(device)).cpu())
        return torch.cat(outputs)

    # warm-up: oneDNN / cuDNN pick kernels per shape and memory format on first use
    with torch.inference_mode():
        model(inputs[:2])
        for net in {id(model): model, id(runner): runner}.values():
            with features._channels_last(net, device.type in ("cpu", "cuda")):
                net(inputs[:2])

    best: dict[str, float] = {}
    results: dict[str, object] = {}

    def measure(name, function):
        result, seconds = timed(function, device)
        best[name] = min(best.get(name, float("inf")), seconds)
        results.setdefault(name, result)

    for _ in range(repeat):  # interleaved, best of `repeat`: robust to a busy machine
        measure("data", lambda: run_extract(DataOnly(), cache=False))
        measure("ceiling", ceiling)
        if runner is not model:
            measure("unfolded", lambda: ceiling(model))
        measure("naive", naive)
        measure("extract", lambda: run_extract(cache=False))
        with tempfile.TemporaryDirectory(prefix="featurelab-bench-cache-") as folder:
            measure("cache_miss", lambda: run_extract(cache=folder))
            measure("cache_hit", lambda: run_extract(cache=folder))  # same model object
            # a new object (copied before the clock starts): its fingerprint probe runs again
            fresh = copy.deepcopy(model)
            measure("cold_hit", lambda: run_extract(fresh, cache=folder))  # noqa: B023
        if device.type == "cpu":  # why extract uses no worker process on a small CPU
            measure("one_worker", lambda: run_extract(cache=False, num_workers=1))
        if do_alt:
            measure("alt", lambda: run_extract(cache=False, amp=True))
    inputs = None

    rate = {name: n / seconds for name, seconds in best.items()}
    row["data_img_s"] = rate["data"]
    row["ceiling_img_s"] = rate["ceiling"]
    row["unfolded_ceiling_img_s"] = rate.get("unfolded", rate["ceiling"])
    row["naive_img_s"] = rate["naive"]
    row["extract_img_s"] = rate["extract"]
    row["one_worker_img_s"] = rate.get("one_worker")
    row["x_naive"] = rate["extract"] / rate["naive"]
    row["of_ceiling"] = rate["extract"] / rate["ceiling"]
    row["serial_bound_img_s"] = 1 / (1 / rate["ceiling"] + 1 / rate["data"])
    row["of_bound"] = rate["extract"] / row["serial_bound_img_s"]
    fast, labels = results["extract"]
    row["feature_shape"] = list(fast.shape[1:])
    if dataset_name != "cifar10":  # same pipeline as the naive loop: same numbers
        row["vs_naive_max_rel"], row["vs_naive_rel_l2"] = relative_differences(
            fast, results["naive"].float().cpu()
        )
    row["cache_miss_img_s"] = rate["cache_miss"]
    row["cache_hit_s"] = best["cache_hit"]
    row["cache_hit_speedup"] = best["extract"] / best["cache_hit"]
    row["cold_hit_s"] = best["cold_hit"]
    row["cold_hit_speedup"] = best["extract"] / best["cold_hit"]
    hit, hit_labels = results["cache_hit"]
    cold, cold_labels = results["cold_hit"]
    row["cache_hit_identical"] = bool(
        torch.equal(hit, fast)
        and torch.equal(hit_labels, labels)
        and torch.equal(cold, fast)
        and torch.equal(cold_labels, labels)
    )
    if do_alt:
        alt = results["alt"][0]
        row["alt_precision"] = str(features.resolve_amp(True, device)).replace("torch.", "")
        row["alt_img_s"] = rate["alt"]
        row["amp_max_rel"], row["amp_rel_l2"] = relative_differences(alt, fast)
    row["load_after"] = load_average()
    log(format_row(row))
    return row


COLUMNS = [
    ("model", "model", "{}"),
    ("dataset", "dataset", "{}"),
    ("images", "n", "{}"),
    ("naive_img_s", "naive", "{:.1f}"),
    ("extract_img_s", "extract", "{:.1f}"),
    ("x_naive", "x naive", "{:.2f}"),
    ("one_worker_img_s", "1 worker", "{:.1f}"),
    ("unfolded_ceiling_img_s", "unfolded", "{:.1f}"),
    ("ceiling_img_s", "ceiling", "{:.1f}"),
    ("of_ceiling", "of ceil", "{:.2f}"),
    ("data_img_s", "data", "{:.0f}"),
    ("serial_bound_img_s", "bound", "{:.1f}"),
    ("of_bound", "of bound", "{:.2f}"),
    ("cache_hit_s", "hit s", "{:.2f}"),
    ("cache_hit_speedup", "hit x", "{:.0f}"),
    ("cold_hit_s", "cold hit s", "{:.2f}"),
    ("cold_hit_speedup", "cold x", "{:.0f}"),
    ("alt_img_s", "alt", "{:.1f}"),
    ("amp_max_rel", "alt maxrel", "{:.1e}"),
    ("load_before", "load", "{}"),
]


def format_row(row: dict) -> str:
    cells = []
    for key, _title, fmt in COLUMNS:
        value = row.get(key)
        cells.append("-" if value is None else fmt.format(value))
    return "| " + " | ".join(cells) + " |"


def header() -> str:
    titles = [title for _, title, _ in COLUMNS]
    return "| " + " | ".join(titles) + " |\n|" + "|".join("---" for _ in titles) + "|"


def fingerprint_seconds(device: torch.device) -> tuple[float, float]:
    """VGG16 relu7 ``fingerprint_module`` seconds: (a new module object, the same object again).

    A new object pays the 1-image probe forward pass and the hashing of 138 M parameters; the
    same object again (unchanged) only the hashing (the probe output is remembered).
    """
    full, _, _ = backbones.load_model("vgg16", pretrained=False)
    relu7 = references.cut(full, "vgg16", "relu7").to(device)
    warm = copy.deepcopy(relu7)
    cache.fingerprint_module(warm)  # warm-up (oneDNN primitives) on another object
    _, new_object = timed(lambda: cache.fingerprint_module(relu7), device)
    _, same_object = timed(lambda: cache.fingerprint_module(relu7), device)
    return new_object, same_object


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=200, help="images per dataset (default 200)")
    parser.add_argument(
        "--vgg-limit", type=int, default=64, help="images per dataset for vgg16 (default 64)"
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: auto)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per variant, best kept (default 1; vgg16 always 1)",
    )
    parser.add_argument("--no-alt", action="store_true", help="skip the amp=True run")
    parser.add_argument("--realdata", default=None, help="folder of the real images")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)

    device = auto_device(args.device)
    data = realdata_dir(args.realdata)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    for name in models:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    for name in names:
        if name not in DATASETS:
            parser.error(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")

    info = machine()
    print(
        f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
        f"{info['torch_threads']} threads, device {device}"
        + (f" ({info['gpu']})" if "gpu" in info else "")
    )
    seconds = fingerprint_seconds(device) if "vgg16" in models else None
    if seconds is not None:
        print(
            f"# VGG16 relu7 fingerprint_module: {seconds[0]:.2f} s for a new module object "
            f"(138 M parameters hashed + 1-image probe), {seconds[1]:.2f} s for the same "
            "object again (hashing only)"
        )
    print(header(), flush=True)
    rows = []
    started = time.perf_counter()
    for model_name in models:
        limit = min(args.limit, args.vgg_limit) if model_name == "vgg16" else args.limit
        for dataset_name in names:
            rows.append(
                bench_pair(
                    model_name,
                    dataset_name,
                    data / DATASETS[dataset_name],
                    limit,
                    device,
                    args.batch_size,
                    1 if model_name == "vgg16" else args.repeat,
                    not args.no_alt,
                    lambda line: print(line, flush=True),
                )
            )
    total = time.perf_counter() - started
    print(f"# {total:.0f} s in all")
    if args.json:
        result = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": info,
            "device": str(device),
            "limit": args.limit,
            "vgg_limit": args.vgg_limit,
            "batch_size": args.batch_size,
            "repeat": args.repeat,
            "vgg16_fingerprint_s": seconds[0] if seconds else None,
            "vgg16_fingerprint_same_object_s": seconds[1] if seconds else None,
            "seconds": total,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
