#!/usr/bin/env python
"""Benchmark: moxi-hf's engine against the original evaluation pattern, in one run.

A random ViT-Tiny-sized classifier (hidden 192, 12 layers, 3 heads, MLP 768, patch 16; the
classifier weights are scaled ×``--head-scale`` so that p(label) varies between coalitions, which
a freshly initialised head does not do) explains a few synthetic images (noise, blobs, stripes,
gradient, checkerboard) at 128 px (64 patches) and 224 px (196 patches) with MoXI insertion /
deletion and self-context Shapley insertion / deletion, three ways:

- ``naive``: :class:`benchmarks.naive.NaiveMoXI`, the original evaluation pattern (fp32, eager
  attention, all N candidates per step, patch projection per coalition, Python-loop removal,
  one image at a time);
- ``fp32`` and ``bf16``: :class:`moxi_hf.methods.MoXI` / self-Shapley on the value function,
  all images together (bf16 = the model cast to bfloat16, as ``Explainer(dtype="bfloat16")``).

Per case: seconds per image, speedup over naive, whether the orders equal naive's (fp32) or the
AUC difference of the insertion/deletion curves against the fp32 orders (bf16; curves of p(label)
measured with the fp32 model), the FLOPs executed (counted analytically from the sequence
lengths), the achieved GFLOP/s and its fraction of a large matmul's rate measured in the same
run (best of one measurement before and one after the cases), peak memory (peak RSS of a fresh
process that builds the model and runs only that measurement, torch itself included; on GPU
``torch.cuda.max_memory_allocated``), and "other load": the CPU cores that OTHER
processes used during the measurement (from /proc; on a shared 2-core machine anything above ~0.1
means the timing was disturbed).

``--arch clip`` is a zero-shot CLIP row instead: a random ViT-B/32-sized vision tower (hidden 768,
12 layers, 12 heads, MLP 3072, patch 32; at 224 px 49 patches) compared with the text features of
ten random prompts, computed once (``logit_scale`` set to ln 100, trained CLIP's value); naive runs
the same game with every coalition through the vision tower from ``pixel_values``.

Two more suites (``--suite``) measure the 196-player grid of ViT-B/16 at 224 px:

- ``judge``: the trained 196-player digit judge (``models/moxi-vit-mnist-196``) on its sample
  digits, exact MoXI against ``budget="fast"``: seconds per image, token-forwards (counted by the
  value function), and the fidelity of the budget (change in accuracy-AUC and confidence-AUC,
  patches needed equal to exact);
- ``vit-b16``: a random ViT-B/16-sized classifier (hidden 768, 12 layers, 12 heads, MLP 3072, patch
  16, 224 px) timed for the first ``--greedy-steps`` greedy steps of exact MoXI insertion and
  deletion on one image; the whole order's time is extrapolated from the counted token-forwards
  (and, as a cross-check, from the FLOPs), with the peak memory of those steps (the first deletion
  steps run the longest sequences, so they set the peak). With ``--naive-images 1`` the naive
  pattern is timed the same way.

Usage::

    python scripts/benchmark.py --quick                  # 128 px only, a few minutes on 2 cores
    python scripts/benchmark.py --arch clip --sizes 224 --images 1 --dtypes fp32 --curves insertion
    python scripts/benchmark.py --quick --arch dinov2    # the same for another token architecture
    python scripts/benchmark.py --quick --arch all --dtypes fp32 --json arch.json   # one table per architecture
    python scripts/benchmark.py --naive-images 1 --json benchmark.json   # 128 + 224 px, ~30 min
    python scripts/benchmark.py --suite judge vit-b16 --json large.json   # the 196-player suites
    python scripts/benchmark.py --suite vit-b16 --device cuda --naive-images 1 --greedy-steps 20   # on a GPU
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# The naive baseline lives in benchmarks/ at the repository root, outside the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import (
    BeitConfig,
    CLIPConfig,
    Data2VecVisionConfig,
    DeiTConfig,
    Dinov2Config,
    Dinov2WithRegistersConfig,
    IJepaConfig,
    ViTConfig,
    ViTMSNConfig,
)

from benchmarks.naive import NaiveMoXI
from moxi_hf import Explainer, TokenRemoval, ValueFunction, auc, get_method, measure_curves
from moxi_hf.methods.moxi import MoXI
from moxi_hf.modeling import TOKEN_CLASSES, TokenRemovalClassifier, TokenRemovalImageText
from moxi_hf.options import BUDGETS
from moxi_hf.zero_shot import CandidateText, ZeroShotRemoval

sys.path.insert(0, str(Path(__file__).resolve().parent))
from budget_frontier import compare as compare_budget  # the frontier script's own measures
from budget_frontier import run as run_budget

CASES = (("moxi", "insertion"), ("moxi", "deletion"), ("self-shapley", "insertion"), ("self-shapley", "deletion"))
IMAGE_KINDS = ("blobs", "noise", "stripes", "gradient", "checkerboard")
TINY = dict(patch_size=16, hidden_size=192, num_hidden_layers=12, num_attention_heads=3, num_labels=10,
            num_channels=3)
#: the ViT-B/16-sized random classifier of ``--suite vit-b16`` (224 px: 14 × 14 = 196 patches)
VIT_B16 = dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
               intermediate_size=3072, num_labels=10, num_channels=3)
JUDGE = Path(__file__).resolve().parents[1] / "models" / "moxi-vit-mnist-196"
SUITES = ("tiny", "judge", "vit-b16")
#: --arch choices: (config class, extra config arguments, stock classifier name). Same ViT-Tiny sizes for all.
ARCHITECTURES = {
    "vit": (ViTConfig, {"intermediate_size": 768}, "ViTForImageClassification"),
    "deit": (DeiTConfig, {"intermediate_size": 768}, "DeiTForImageClassification"),
    "vit_msn": (ViTMSNConfig, {"intermediate_size": 768}, "ViTMSNForImageClassification"),
    "dinov2": (Dinov2Config, {"mlp_ratio": 4}, "Dinov2ForImageClassification"),
    "dinov2_with_registers": (Dinov2WithRegistersConfig, {"mlp_ratio": 4, "num_register_tokens": 4},
                              "Dinov2WithRegistersForImageClassification"),
    "beit": (BeitConfig, {"intermediate_size": 768, "use_relative_position_bias": True, "use_mean_pooling": True},
             "BeitForImageClassification"),
    "data2vec-vision": (Data2VecVisionConfig, {"intermediate_size": 768, "use_relative_position_bias": True,
                                                "use_mean_pooling": True}, "Data2VecVisionForImageClassification"),
    "ijepa": (IJepaConfig, {"intermediate_size": 768}, "IJepaForImageClassification"),
    # zero-shot CLIP, ViT-B/32-sized vision tower (make_clip_model)
    "clip": (CLIPConfig, {}, "CLIPModel"),
}
#: the CLIP row's vision tower (ViT-B/32) and a small text tower (its features are computed once)
CLIP_VISION = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, patch_size=32)
CLIP_TEXT = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024, vocab_size=1000,
                 max_position_embeddings=16, bos_token_id=998, eos_token_id=999, pad_token_id=999)
CLIP_CANDIDATES = 10


# ------------------------------------------------------------------------------------------ inputs

def make_model(image_size: int, head_scale: float, seed: int = 0, arch: str = "vit") -> TokenRemovalClassifier:
    """A random ViT-Tiny-sized MoXI classifier of architecture ``arch`` (fp32, eval, SDPA attention); for ``clip``
    a random zero-shot CLIP with a ViT-B/32-sized vision tower."""
    torch.manual_seed(seed)
    if arch == "clip":
        config = CLIPConfig(vision_config=dict(CLIP_VISION, image_size=image_size), text_config=CLIP_TEXT,
                            projection_dim=512)
        config._attn_implementation = "sdpa"
        model = TOKEN_CLASSES["CLIPModel"](config).eval()
        with torch.no_grad():
            model.logit_scale.fill_(float(torch.log(torch.tensor(100.0))))
        return model
    config_class, extra, stock_name = ARCHITECTURES[arch]
    config = config_class(image_size=image_size, **TINY, **extra)
    config._attn_implementation = "eager" if arch == "data2vec-vision" else "sdpa"
    model = TOKEN_CLASSES[stock_name](config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(head_scale)
    return model


def candidate_text(model: TokenRemovalImageText, seed: int = 0) -> CandidateText:
    """Text features of ten random prompts (the same for every process: fixed seed), computed once."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config.text_config
    ids = torch.randint(0, config.vocab_size - 2, (CLIP_CANDIDATES, 8), generator=generator)
    ids[:, 0], ids[:, -1] = config.bos_token_id, config.eos_token_id
    with torch.no_grad():
        features = torch.nn.functional.normalize(model.get_text_features(input_ids=ids).pooler_output.float(), dim=-1)
    return CandidateText(tuple(f"prompt {k}" for k in range(CLIP_CANDIDATES)), ("{}",), features)


def make_adapter(model) -> TokenRemoval:
    """The removal adapter of a benchmark model: token removal, or the zero-shot game of the CLIP row."""
    if isinstance(model, TokenRemovalImageText):
        return ZeroShotRemoval(model, candidate_text(model))
    return TokenRemoval(model)


def vision_config(config):
    """The config of the vision tower: the model's own, or a CLIP's ``vision_config``."""
    return getattr(config, "vision_config", config)


def make_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """Synthetic processed images (count, 3, size, size) in normalised space, cycling over IMAGE_KINDS."""
    generator = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    images = []
    for index in range(count):
        kind = IMAGE_KINDS[index % len(IMAGE_KINDS)]
        if kind == "noise":
            image = torch.randn(3, size, size, generator=generator)
        elif kind == "blobs":
            image = torch.zeros(3, size, size)
            for _ in range(4):
                cy, cx = (torch.rand(2, generator=generator) * 2 - 1).tolist()
                color = torch.randn(3, 1, 1, generator=generator) * 1.5
                image += color * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.08)
        elif kind == "stripes":
            frequency = 3 + 5 * float(torch.rand(1, generator=generator))
            colours = torch.tensor([1.5, -0.5, 1.0]).view(3, 1, 1)
            image = torch.sin(frequency * 3.1416 * (xx + 0.5 * yy)).expand(3, -1, -1) * colours
        elif kind == "gradient":
            image = torch.stack((xx, yy, xx * yy)) * 2
        else:
            cells = ((torch.arange(size) // 16).view(-1, 1) + (torch.arange(size) // 16).view(1, -1)) % 2
            image = (cells.float() * 2 - 1).expand(3, -1, -1) * torch.tensor([1.0, 0.3, -1.0]).view(3, 1, 1)
        images.append(image + 0.1 * torch.randn(3, size, size, generator=generator))
    return torch.stack(images).float()


# ------------------------------------------------------------------------------------------ FLOPs

def sequence_flops(length: int, config: ViTConfig, last_queries: int | None = None, patch_tokens: int = 0) -> float:
    """FLOPs (multiply-add = 2) of one sequence of ``length`` tokens through encoder and head.

    ``last_queries``: the last layer computes attention, MLP and the final norm only for this
    many tokens (the fast engine: the special tokens); None = all tokens (the model's forward).
    ``patch_tokens``: patches projected from pixels for this sequence (the naive pattern).
    """
    d, layers = config.hidden_size, config.num_hidden_layers
    m = getattr(config, "intermediate_size", None) or int(d * config.mlp_ratio)
    per_layer = length * (8 * d * d + 4 * d * m) + 4 * length * length * d
    total = (layers - 1) * per_layer
    if last_queries is None:
        total += per_layer
    else:
        total += length * 6 * d * d + 4 * last_queries * length * d + last_queries * (2 * d * d + 4 * d * m)
    total += 2 * d * getattr(config, "num_labels", CLIP_CANDIDATES)
    total += patch_tokens * 2 * config.num_channels * config.patch_size**2 * d
    return float(total)


def engine_sequences(method: str, curve: str, n: int) -> Counter:
    """Sequence lengths (special token included) the fast engine evaluates for one image."""
    seen: Counter = Counter()
    insertion = curve == "insertion"
    if method == "self-shapley":
        seen[1 if insertion else n + 1] += 1
        seen[2 if insertion else n] += n
        return seen
    return moxi_sequences(curve, n)


def moxi_sequences(curve: str, n: int, steps: int | None = None, naive: bool = False) -> Counter:
    """Sequence lengths (one special token included) of exact MoXI's first ``steps`` greedy steps on n
    patches (all of them when None) for one image: the engine (with v(∅)/v(N) at the start) or, with
    ``naive``, the original pattern (all n candidates at every step, the chosen ones included)."""
    steps = n if steps is None else min(steps, n)
    seen: Counter = Counter()
    insertion = curve == "insertion"
    if not naive:
        seen[1 if insertion else n + 1] += 1  # v(∅) or v(N) at the start
    for step in range(steps):
        if not naive:
            seen[(step + 2) if insertion else (n - step)] += n - step
        elif insertion:
            seen[step + 2] += n  # S + [i] for every i
        else:
            seen[n - step] += n - step  # R minus a remaining candidate
            if step:
                seen[n - step + 1] += step  # R itself, for each candidate already removed
    return seen


def sequence_tokens(sequences: Counter) -> int:
    return sum(length * count for length, count in sequences.items())


def counter_flops(sequences: Counter, config: ViTConfig, fast: bool, n_patches: int) -> float:
    return sum(count * sequence_flops(length, config, 1 if fast else None, 0 if fast else n_patches)
               for length, count in sequences.items())


# ------------------------------------------------------------------------------------------ measuring

def release_free_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``) so the next peak RSS is the next case's own."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory in MB while active: the process's peak RSS on CPU, max_memory_allocated on CUDA.

    On Linux the kernel's peak-RSS counter (VmHWM) is reset on entry (``/proc/self/clear_refs``)
    and read on exit, so nothing runs beside the measured code; elsewhere RSS is sampled every
    100 ms by a thread.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @staticmethod
    def _high_water_mark() -> int | None:
        try:
            with open("/proc/self/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakMemory:
        release_free_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # reset the peak RSS counter
            self._use_hwm = self._high_water_mark() is not None
        except OSError:
            self._use_hwm = False
        if not self._use_hwm:
            self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self._use_hwm:
            self.peak = self._high_water_mark() or 0
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())

    @property
    def mb(self) -> float:
        return self.peak / 2**20


class OtherLoad:
    """CPU used by OTHER processes while active, in cores (0 = quiet machine), from /proc (Linux)."""

    @staticmethod
    def _read() -> tuple[float, float, float]:
        try:
            with open("/proc/stat") as handle:
                fields = [int(v) for v in handle.readline().split()[1:]]
            with open("/proc/self/stat") as handle:
                mine = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return (0.0, 0.0, time.perf_counter())
        busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        return (float(busy), float(int(mine[11]) + int(mine[12])), time.perf_counter())

    def __enter__(self) -> OtherLoad:
        self.start = self._read()
        return self

    def __exit__(self, *exc) -> None:
        end = self._read()
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = max(end[2] - self.start[2], 1e-9)
        self.cores = max(0.0, ((end[0] - self.start[0]) - (end[1] - self.start[1])) / ticks / seconds)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 6) -> float:
    """GFLOP/s of a large square matmul (best of ``repeats``)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


@dataclass
class Row:
    arch: str
    size: int
    patches: int
    method: str
    curve: str
    mode: str  # naive | fp32 | bf16
    images: int
    seconds_per_image: float
    speedup: float | None = None
    orders_equal_naive: bool | None = None
    auc_fp32: float | None = None  # mean AUC of p(label) along the fp32 orders
    auc_diff: float | None = None  # mean (AUC along this mode's orders − AUC along fp32 orders)
    auc_max_abs_diff: float | None = None
    gflop_per_image: float = 0.0
    gflops: float = 0.0
    matmul_fraction: float = 0.0
    peak_mb: float = 0.0
    other_load_cores: float = 0.0  # CPU cores used by other processes during the measurement


def run_engine(model, pixel_values, labels, method: str, curve: str, device: torch.device):
    """(orders (B, N), seconds, peak MB) of the fast engine on all images together."""
    adapter = make_adapter(model)
    game = ValueFunction(adapter, pixel_values.to(device), labels)
    with PeakMemory(device) as memory, OtherLoad() as load:
        synchronize(device)
        start = time.perf_counter()
        attribution = get_method(method).attribute(game, curve)
        synchronize(device)
        seconds = time.perf_counter() - start
    return attribution.order, seconds, memory.mb, load.cores


def run_naive(naive: NaiveMoXI, pixel_values, labels, method: str, curve: str, device: torch.device):
    with PeakMemory(device) as memory, OtherLoad() as load:
        synchronize(device)
        start = time.perf_counter()
        call = naive.moxi if method == "moxi" else naive.self_shapley
        result = call(pixel_values.to(device), labels, curve)
        synchronize(device)
        seconds = time.perf_counter() - start
    return result, seconds, memory.mb, load.cores


def curve_auc(game: ValueFunction, orders: torch.Tensor, curve: str) -> torch.Tensor:
    """AUC (B,) of p(label) along each order."""
    return auc(measure_curves(game, orders, curve).probabilities)


def print_profile(model, pixel_values, labels, method: str, curve: str, device: torch.device, label: str) -> None:
    """One more run of the fast engine under torch.profiler; prints the ops that took the most time."""
    from torch.profiler import ProfilerActivity, profile

    game = ValueFunction(make_adapter(model), pixel_values.to(device), labels)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        get_method(method).attribute(game, curve)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nprofile: {label}\n" + profiler.key_averages().table(sort_by=sort, row_limit=8), flush=True)


def warm_up(model, pixel_values, labels, device) -> None:
    game = ValueFunction(make_adapter(model), pixel_values[:1].to(device), labels[:1])
    get_method("moxi", max_players=2).attribute(game, "insertion")
    get_method("moxi", max_players=2).attribute(game, "deletion")


def naive_image_count(size: int, args) -> int:
    """Images the naive baseline runs on: all, but ``--naive-images`` (or none) above 128 px."""
    if size > 128 and args.skip_naive_224:
        return 0
    if size > 128 and args.naive_images:
        return min(args.naive_images, args.images)
    return args.images


def measure(spec: dict) -> dict:
    """Time one mode on one case: build the model and images, warm up, run, return the result.

    Runs in a fresh process (``--isolate``, the default) so that its peak RSS and its timing do
    not depend on what ran before; every process builds the same model and images (fixed seeds).
    """
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model = make_model(spec["size"], spec["head_scale"], arch=spec["arch"]).to(device)
    pixel_values = make_images(spec["images"], spec["size"])
    adapter = make_adapter(model)
    labels = adapter.full_logits(pixel_values.to(device)).argmax(dim=1).cpu()
    method, curve = spec["method"], spec["curve"]
    if spec["mode"] == "naive":
        count = spec["naive_images"]
        text = adapter.text.features if isinstance(adapter, ZeroShotRemoval) else None
        naive = NaiveMoXI(model, text_features=text)
        warm = naive.model.backbone if text is not None else naive.model  # the CLIP row: its vision tower
        warm(pixel_values=pixel_values[:1].to(device))  # warm-up
        result, seconds, peak, load = run_naive(naive, pixel_values[:count], labels[:count], method, curve, device)
        return {"order": result.order, "seconds": seconds, "peak_mb": peak, "load": load,
                "sequences": dict(result.sequences), "images": count}
    if spec["mode"] == "bf16":
        model = model.to(torch.bfloat16)
    warm_up(model, pixel_values, labels, device)
    order, seconds, peak, load = run_engine(model, pixel_values, labels, method, curve, device)
    return {"order": order, "seconds": seconds, "peak_mb": peak, "load": load, "images": spec["images"]}


def measure_isolated(spec: dict, isolate: bool, function=None) -> dict:
    """``function(spec)`` (default :func:`measure`), in a fresh process unless ``isolate`` is False."""
    function = function or measure
    if not isolate:
        return function(spec)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, spec).result()


def benchmark_size(arch: str, size: int, args, device: torch.device) -> list[Row]:
    model = make_model(size, args.head_scale, arch=arch).to(device)
    config = vision_config(model.config)
    n = (size // config.patch_size) ** 2
    pixel_values = make_images(args.images, size)
    adapter = make_adapter(model)
    labels = adapter.full_logits(pixel_values.to(device)).argmax(dim=1).cpu()
    naive_images = naive_image_count(size, args)
    fp32_game = ValueFunction(adapter, pixel_values.to(device), labels)
    modes = (["naive"] if naive_images else []) + list(args.dtypes)
    rows: list[Row] = []
    for method, curve in CASES:
        if (args.methods and method not in args.methods) or (args.curves and curve not in args.curves):
            continue
        label = f"{arch} {size} px {method} {curve}"
        results: dict[str, dict] = {}
        for mode in modes:
            spec = dict(size=size, arch=arch, head_scale=args.head_scale, images=args.images, naive_images=naive_images,
                        mode=mode, method=method, curve=curve, device=str(device), threads=args.threads)
            results[mode] = out = measure_isolated(spec, not args.in_process)
            per_image = out["seconds"] / out["images"]
            if mode == "naive":
                flops = counter_flops(Counter(out["sequences"]), config, fast=False, n_patches=n)
                flops /= out["images"]
            else:
                flops = counter_flops(engine_sequences(method, curve, n), config, fast=True, n_patches=n)
                flops += n * 2 * config.num_channels * config.patch_size**2 * config.hidden_size  # embedding once
            row = Row(arch, size, n, method, curve, mode, out["images"], per_image,
                      gflop_per_image=flops / 1e9, gflops=flops / per_image / 1e9,
                      peak_mb=out["peak_mb"], other_load_cores=out["load"])
            if "naive" in results:
                row.speedup = results["naive"]["seconds"] / results["naive"]["images"] / per_image
            if mode == "fp32" and "naive" in results:
                row.orders_equal_naive = bool(torch.equal(out["order"][:naive_images], results["naive"]["order"]))
            if mode == "bf16" and "fp32" in results:
                reference = curve_auc(fp32_game, results["fp32"]["order"], curve)
                ours = curve_auc(fp32_game, out["order"], curve)
                row.auc_fp32 = float(reference.mean())
                row.auc_diff = float((ours - reference).mean())
                row.auc_max_abs_diff = float((ours - reference).abs().max())
            rows.append(row)
            print(f"  {label} {mode}: {per_image:.2f} s/image", flush=True)
            if args.profile and mode != "naive":
                profiled = model if mode == "fp32" else copy.deepcopy(model).to(torch.bfloat16)
                print_profile(profiled, pixel_values, labels, method, curve, device, f"{label} {mode}")
    return rows


# ------------------------------------------------------------------------------------------ 196 players

@dataclass
class GreedyStepsRow:
    """A few greedy steps of the ViT-B/16-sized case, and the whole order extrapolated from them."""

    curve: str
    mode: str  # fp32 | bf16 | naive
    steps: int
    seconds: float  # the timed steps (and v(∅)/v(N) for the engine)
    tokens: int  # token-forwards of the timed steps
    full_tokens: int  # token-forwards of the whole order
    full_seconds_tokens: float  # whole order, extrapolated from token-forwards
    full_seconds_flops: float  # whole order, extrapolated from FLOPs (cross-check)
    peak_mb: float
    other_load_cores: float


def vit_b16_model(head_scale: float, device: torch.device) -> TokenRemovalClassifier:
    torch.manual_seed(0)
    config = ViTConfig(**VIT_B16)
    config._attn_implementation = "sdpa"
    model = TOKEN_CLASSES["ViTForImageClassification"](config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(head_scale)
    return model.to(device)


def measure_greedy_steps(spec: dict) -> dict:
    """Time the first ``steps`` greedy steps of MoXI on one image of the ViT-B/16-sized model (fresh process)."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model = vit_b16_model(spec["head_scale"], device)
    pixel_values = make_images(1, VIT_B16["image_size"]).to(device)
    labels = TokenRemoval(model).full_logits(pixel_values).argmax(dim=1).cpu()
    curve, steps = spec["curve"], spec["steps"]
    if spec["mode"] == "naive":
        naive = NaiveMoXI(model)
        naive.model(pixel_values=pixel_values)  # warm-up
        with PeakMemory(device) as memory, OtherLoad() as load:
            synchronize(device)
            start = time.perf_counter()
            result = naive.moxi(pixel_values, labels, curve, steps=steps)
            synchronize(device)
            seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak_mb": memory.mb, "load": load.cores,
                "tokens": sequence_tokens(result.sequences)}
    if spec["mode"] == "bf16":
        model = model.to(torch.bfloat16)
    game = ValueFunction(TokenRemoval(model), pixel_values, labels)
    get_method("moxi", max_players=2).attribute(game, "insertion")  # warm-up: short sequences, cheap
    game = ValueFunction(TokenRemoval(model), pixel_values, labels)
    with PeakMemory(device) as memory, OtherLoad() as load:
        synchronize(device)
        start = time.perf_counter()
        get_method("moxi", max_players=steps).attribute(game, curve)
        synchronize(device)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": memory.mb, "load": load.cores, "tokens": game.tokens}


def benchmark_vit_b16(args, device: torch.device) -> list[GreedyStepsRow]:
    config = ViTConfig(**VIT_B16)
    n = (VIT_B16["image_size"] // VIT_B16["patch_size"]) ** 2
    modes = (["naive"] if args.naive_images else []) + list(args.dtypes)
    rows = []
    for curve in args.curves or ("insertion", "deletion"):
        for mode in modes:
            naive = mode == "naive"
            spec = dict(mode=mode, curve=curve, steps=args.greedy_steps, device=str(device), threads=args.threads,
                        head_scale=args.head_scale)
            out = measure_isolated(spec, not args.in_process, measure_greedy_steps)
            timed = moxi_sequences(curve, n, args.greedy_steps, naive=naive)
            whole = moxi_sequences(curve, n, naive=naive)
            if sequence_tokens(timed) != out["tokens"]:
                raise RuntimeError(f"counted {out['tokens']} token-forwards, expected {sequence_tokens(timed)}")
            fast = not naive
            flops_timed = counter_flops(timed, config, fast=fast, n_patches=n)
            flops_whole = counter_flops(whole, config, fast=fast, n_patches=n)
            row = GreedyStepsRow(curve, mode, args.greedy_steps, out["seconds"], out["tokens"],
                                 sequence_tokens(whole), out["seconds"] * sequence_tokens(whole) / out["tokens"],
                                 out["seconds"] * flops_whole / flops_timed, out["peak_mb"], out["load"])
            rows.append(row)
            print(f"  vit-b16 {curve} {mode}: {row.steps} steps in {row.seconds:.1f} s; whole order "
                  f"~{row.full_seconds_tokens / 60:.1f} min (token-forwards), peak {row.peak_mb:.0f} MB", flush=True)
    return rows


@dataclass
class JudgeRow:
    """Exact MoXI against budget "fast" on the 196-player judge's sample digits."""

    curve: str
    images: int
    exact_seconds_per_image: float
    fast_seconds_per_image: float
    exact_tokens_per_image: float
    fast_tokens_per_image: float
    less_work: float  # exact token-forwards / fast token-forwards
    less_time: float
    less_cpu_time: float
    d_accuracy_auc: float  # mean over images of (fast − exact)
    d_confidence_auc: float
    needed_equal: float  # share of images whose patches needed equal exact's
    needed_within_one: float


def benchmark_judge(args) -> list[JudgeRow]:
    from PIL import Image

    explainer = Explainer.from_pretrained(str(args.judge))
    files = sorted((args.judge / "samples").glob("digit_*.png"))[: args.judge_images]
    if not files:
        raise SystemExit(f"no sample digits in {args.judge / 'samples'}")
    pixel_values, _ = explainer.preprocess([Image.open(path) for path in files])
    labels = [int(path.name.split("_")[1]) for path in files]
    rows = []
    for curve in args.curves or ("insertion", "deletion"):
        exact, fast = (run_budget(explainer, pixel_values, labels, curve, MoXI(budget=budget))
                       for budget in ("exact", "fast"))
        found, count = compare_budget(exact, fast), len(labels)
        row = JudgeRow(curve, count, exact["seconds"] / count, fast["seconds"] / count, exact["tokens"] / count,
                       fast["tokens"] / count, found["work"], found["time"], found["cpu_time"], found["d_acc"],
                       found["d_conf"],
                       found["needed_equal"], found["needed_within_one"])
        rows.append(row)
        print(f"  judge {curve}: exact {row.exact_seconds_per_image:.1f} s/image, fast "
              f"{row.fast_seconds_per_image:.1f} s/image ({row.less_work:.1f}x less work)", flush=True)
    return rows


def format_vit_b16_table(rows: list[GreedyStepsRow], header: str) -> str:
    lines = [header, "",
             "| case | mode | greedy steps timed | s timed | whole order: token-forwards | whole order, min "
             "(extrapolated from token-forwards) | (from FLOPs) | peak MB | other load |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| moxi {row.curve} | {row.mode} | {row.steps} | {row.seconds:.1f} | {row.full_tokens:,} | "
                     f"{row.full_seconds_tokens / 60:.1f} | {row.full_seconds_flops / 60:.1f} | {row.peak_mb:.0f} | "
                     f"{row.other_load_cores:.2f} |")
    return "\n".join(lines)


def format_judge_table(rows: list[JudgeRow], header: str) -> str:
    lines = [header, "",
             "| curve | images | exact s/image | fast s/image | less work (token-forwards) | less time | less CPU time "
             "| Δ acc-AUC | Δ conf-AUC | patches needed = exact | within one |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.curve} | {row.images} | {row.exact_seconds_per_image:.1f} | "
                     f"{row.fast_seconds_per_image:.1f} | {row.less_work:.1f}× | {row.less_time:.1f}× | "
                     f"{row.less_cpu_time:.1f}× | "
                     f"{row.d_accuracy_auc:+.4f} | {row.d_confidence_auc:+.4f} | {100 * row.needed_equal:.0f} % | "
                     f"{100 * row.needed_within_one:.0f} % |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ output

def format_arch_table(rows: list[Row]) -> str:
    """One line per architecture × case: naive and fp32 seconds per image, the speed-up, orders = naive."""
    lines = ["| architecture | size | case | naive s/image | fp32 s/image | speed-up | fp32 orders = naive |",
             "|---|---:|---|---:|---:|---:|---|"]
    fp32 = [row for row in rows if row.mode == "fp32"]
    for row in fp32:
        naive = next((other for other in rows if other.mode == "naive" and (other.arch, other.size, other.method,
                      other.curve) == (row.arch, row.size, row.method, row.curve)), None)
        equal = "-" if row.orders_equal_naive is None else ("yes" if row.orders_equal_naive else "NO")
        lines.append(f"| {row.arch} | {row.size} px | {row.method} {row.curve} | "
                     f"{'-' if naive is None else f'{naive.seconds_per_image:.3f}'} | {row.seconds_per_image:.3f} | "
                     f"{'-' if row.speedup is None else f'{row.speedup:.1f}×'} | {equal} |")
    return "\n".join(lines)


def format_table(rows: list[Row], arch: str, size: int, header: str) -> str:
    lines = [header, "",
             "| case | mode | s/image | speedup vs naive | check | GFLOP/image | GFLOP/s | % of matmul | peak MB "
             "| other load |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        if (row.arch, row.size) != (arch, size):
            continue
        if row.mode == "naive":
            check = f"reference ({row.images} image{'s' if row.images > 1 else ''})"
        elif row.mode == "fp32":
            check = "n/a (naive skipped)" if row.orders_equal_naive is None else (
                "orders = naive" if row.orders_equal_naive else "orders DIFFER from naive")
        else:
            check = f"ΔAUC {row.auc_diff:+.4f} (max {row.auc_max_abs_diff:.4f})" if row.auc_diff is not None else "-"
        speedup = "-" if row.speedup is None else f"{row.speedup:.1f}×"
        lines.append(f"| {row.method} {row.curve} | {row.mode} | {row.seconds_per_image:.3f} | {speedup} | {check} | "
                     f"{row.gflop_per_image:.1f} | {row.gflops:.0f} | {100 * row.matmul_fraction:.0f} % | {row.peak_mb:.0f} "
                     f"| {row.other_load_cores:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 px only")
    parser.add_argument("--arch", nargs="+", choices=(*ARCHITECTURES, "all"), default=["vit"],
                        help="architecture(s) of the random ViT-Tiny-sized model; all: every one, with a "
                             "per-architecture table (default: vit)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="image sizes (px), patch 16")
    parser.add_argument("--images", type=int, default=2, help="benchmark images (≥ 2 exercises cross-image batching)")
    parser.add_argument("--naive-images", type=int, default=None,
                        help="images for the naive baseline above 128 px (default: all; 1 saves ~13 min at 224 px)")
    parser.add_argument("--skip-naive-224", action="store_true", help="do not run the naive baseline at 224 px")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--methods", nargs="+", default=None, choices=["moxi", "self-shapley"])
    parser.add_argument("--curves", nargs="+", default=None, choices=["insertion", "deletion"])
    parser.add_argument("--profile", action="store_true",
                        help="after timing, profile the fast engine once per case and print torch.profiler's top ops")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--head-scale", type=float, default=10.0, help="classifier weight scale of the random model")
    parser.add_argument("--in-process", action="store_true",
                        help="run every measurement in this process (default: a fresh process each, for clean peak RSS)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--suite", nargs="+", choices=SUITES, default=["tiny"],
                        help="tiny: the ViT-Tiny-sized cases above (default); judge: exact against budget 'fast' on "
                             "the 196-player digit judge; vit-b16: a few greedy steps of a ViT-B/16-sized model, the "
                             "whole order extrapolated")
    parser.add_argument("--greedy-steps", type=int, default=3, help="vit-b16: greedy steps timed (default: 3)")
    parser.add_argument("--judge", type=Path, default=JUDGE, help="judge: the 196-player model folder")
    parser.add_argument("--judge-images", type=int, default=6, help="judge: sample digits explained (default: 6)")
    args = parser.parse_args(argv)
    every = [arch for arch in ARCHITECTURES if arch != "clip"]  # "all": the ViT-Tiny-sized classifiers
    archs = every if "all" in args.arch else list(dict.fromkeys(args.arch))
    if args.images < 1:
        parser.error("--images must be at least 1")
    args.dtypes = ["fp32"] + (["bf16"] if "bf16" in args.dtypes else [])  # the bf16 AUC check needs fp32 orders
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [128] if args.quick else args.sizes
    rates = {"fp32": matmul_rate(torch.float32, device), "bf16": matmul_rate(torch.bfloat16, device)}
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "mkldnn": torch.backends.mkldnn.is_available(),
        "matmul_gflops": rates,
    }
    print(f"matmul 2048³ (before): fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s; "
          f"{machine['threads']} threads on {device}", flush=True)
    rows: list[Row] = []
    if "tiny" not in args.suite:
        archs = []
    for arch in archs:
        for size in sizes:
            rows += benchmark_size(arch, size, args, device)
    judge_rows = benchmark_judge(args) if "judge" in args.suite else []
    steps_rows = benchmark_vit_b16(args, device) if "vit-b16" in args.suite else []
    # The machine's matmul rate: best of a measurement before and one after the cases.
    after = {"fp32": matmul_rate(torch.float32, device), "bf16": matmul_rate(torch.bfloat16, device)}
    machine["matmul_gflops_before_after"] = {key: [rates[key], after[key]] for key in rates}
    rates.update({key: max(rates[key], after[key]) for key in rates})
    for row in rows:
        row.matmul_fraction = row.gflops / rates["bf16" if row.mode == "bf16" else "fp32"]
    tables = []
    for arch in archs:
        for size in sizes:
            n = (size // (32 if arch == "clip" else 16)) ** 2
            count = naive_image_count(size, args)
            naive_note = f"naive on {count} image(s)" if count else "naive skipped (--skip-naive-224)"
            header = (f"**{arch}, {size} px ({n} patches)**, {args.images} images, {machine['threads']} threads, "
                      f"{device}; {naive_note}; matmul fp32 {rates['fp32']:.0f} / bf16 {rates['bf16']:.0f} GFLOP/s")
            tables.append(format_table(rows, arch, size, header))
    if len(archs) > 1:
        tables.append("**per architecture**\n\n" + format_arch_table(rows))
    if judge_rows:
        fast = BUDGETS["fast"]
        tables.append(format_judge_table(judge_rows, (
            f"**196-player judge** ({args.judge.name}, its {judge_rows[0].images} sample digits), exact MoXI against "
            f"budget 'fast' ({fast}), {machine['threads']} threads, {device}")))
    if steps_rows:
        tables.append(format_vit_b16_table(steps_rows, (
            f"**ViT-B/16-sized, 224 px (196 patches)**, random weights, 1 image, the first {args.greedy_steps} greedy "
            f"steps timed; the whole order's time is extrapolated from the counted token-forwards (FLOPs: a "
            f"cross-check); {machine['threads']} threads, {device}")))
    print("\n" + "\n\n".join(tables))
    if args.json:
        payload = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                   "machine": machine, "rows": [asdict(row) for row in rows],
                   "judge_rows": [asdict(row) for row in judge_rows],
                   "vit_b16_rows": [asdict(row) for row in steps_rows]}
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
