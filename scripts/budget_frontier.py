#!/usr/bin/env python
"""The budgeted MoXI's frontier: work saved against fidelity lost, on held-out digits.

Explains held-out digits of a digit judge (default ``models/moxi-vit-mnist-196``, 14×14 = 196
players) with the exact MoXI greedy and with budgeted settings (``candidates``, ``refresh``), for
insertion and deletion, all images of a run together. Per setting it reports the token-forwards
(counted by the value function) and the wall time relative to exact, the change in accuracy-AUC
and confidence-AUC (``moxi_hf.metrics.auc`` of each image's curve along its order, k = 0..P: the
dataset AUC of ``curves.json`` is their mean), and the share of images whose patches needed are
within one player of exact.

The digits are the held-out split of ``scripts/train_default_model.py`` (never seen in training),
``--per-class`` of each class that the judge classifies correctly, explained for their true label.
Minutes per image on a CPU; exact orders are cached in ``--cache`` so a rerun with other settings
only runs the budgeted ones.

Usage::

    python scripts/budget_frontier.py --per-class 3 --json frontier.json
    python scripts/budget_frontier.py --per-class 3 --settings 10:16 20:8 --curves deletion
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from moxi_hf import Explainer
from moxi_hf.methods.moxi import MoXI
from moxi_hf.metrics import auc, patches_needed
from moxi_hf.options import BUDGETS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from train_default_model import load_raw, split_indices  # noqa: E402  (the judge's own held-out split)

DEFAULT_SETTINGS = ("5:16:0", "5:16:8", "5:8:8", "5:32:8", "3:16:8", "10:16:8", "10:8:8", "10:32:8", "20:16:8")


def held_out_digits(explainer: Explainer, per_class: int) -> tuple[torch.Tensor, list[int], list[int]]:
    """(pixel_values, labels, indices in ``mnist_data()``): the first ``per_class`` held-out digits of
    each class that the judge classifies correctly."""
    from PIL import Image

    images, labels, _ = load_raw("mnist")
    _, test_idx = split_indices(labels)
    chosen: list[int] = []
    for digit in range(10):
        picked = 0
        for index in test_idx[labels[test_idx] == digit]:
            pixel_values, _ = explainer.preprocess([Image.fromarray(images[index], mode="L")])
            if int(explainer.predict(pixel_values)[0]) == digit:
                chosen.append(int(index))
                picked += 1
                if picked == per_class:
                    break
    pixel_values, _ = explainer.preprocess([Image.fromarray(images[i], mode="L") for i in chosen])
    return pixel_values, [int(labels[i]) for i in chosen], chosen


def run(explainer: Explainer, pixel_values, labels, curve: str, method: MoXI) -> dict:
    """One greedy over all images: orders, per-image AUCs and patches needed, token-forwards, seconds."""
    game = explainer.value_function(pixel_values, labels)
    start, cpu = time.perf_counter(), time.process_time()
    attribution = method.attribute(game, curve)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    label = torch.tensor(labels).unsqueeze(1)
    hits = (attribution.curve_predictions == label).float()
    needed = [patches_needed(attribution.curve_predictions[b], labels[b], curve, game.n_players)
              for b in range(len(labels))]
    return {"orders": attribution.order.tolist(), "acc_auc": auc(hits).tolist(),
            "conf_auc": auc(attribution.curve_probabilities).tolist(), "needed": needed,
            "tokens": game.tokens, "coalitions": game.calls, "seconds": seconds, "cpu_seconds": cpu_seconds}


def compare(exact: dict, budgeted: dict) -> dict:
    """Budgeted against exact: work ratios, mean and mean-absolute AUC changes, patches needed within one."""
    acc = np.subtract(budgeted["acc_auc"], exact["acc_auc"])
    conf = np.subtract(budgeted["conf_auc"], exact["conf_auc"])
    needed = np.abs(np.subtract(budgeted["needed"], exact["needed"]))
    cpu = exact["cpu_seconds"] / budgeted["cpu_seconds"] if "cpu_seconds" in exact else float("nan")
    return {"work": exact["tokens"] / budgeted["tokens"], "time": exact["seconds"] / budgeted["seconds"],
            "cpu_time": cpu,
            "d_acc": float(acc.mean()), "abs_acc": float(np.abs(acc).mean()),
            "d_conf": float(conf.mean()), "abs_conf": float(np.abs(conf).mean()),
            "needed_within_one": float((needed <= 1).mean()), "needed_equal": float((needed == 0).mean()),
            "orders_equal": float(np.mean([a == b for a, b in zip(exact["orders"], budgeted["orders"])]))}


def parse_setting(text: str) -> tuple[int, int, int]:
    """``"5:16:8"`` -> (candidates, refresh, warmup); ``"5:16"`` takes the warmup of budget "fast"."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"a setting is CANDIDATES:REFRESH[:WARMUP], got {text!r}")
    warmup = int(parts[2]) if len(parts) == 3 else BUDGETS["fast"]["warmup"]
    return int(parts[0]), int(parts[1]), warmup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "moxi-vit-mnist-196"))
    parser.add_argument("--per-class", type=int, default=3, help="held-out digits per class (default: 3)")
    parser.add_argument("--curves", nargs="+", default=["insertion", "deletion"], choices=["insertion", "deletion"])
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=None,
                        help="CANDIDATES:REFRESH[:WARMUP] settings (default: a grid around budget 'fast')")
    parser.add_argument("--cache", type=Path, default=None, help="exact results are read from / written to here")
    parser.add_argument("--json", type=Path, default=None, help="write every run's results here")
    args = parser.parse_args(argv)
    fast = BUDGETS["fast"]
    settings = args.settings or [parse_setting(s) for s in DEFAULT_SETTINGS]
    explainer = Explainer.from_pretrained(args.model)
    pixel_values, labels, indices = held_out_digits(explainer, args.per_class)
    n_players = explainer.players.n_players
    print(f"{len(labels)} held-out digits, {n_players} players, {torch.get_num_threads()} threads; "
          f"budget 'fast' = {fast['candidates']}:{fast['refresh']}:{fast['warmup']}", flush=True)
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    results: dict = {"model": args.model, "images": indices, "labels": labels, "curves": {}}
    for curve in args.curves:
        key = f"{Path(args.model).name}:{curve}:{','.join(map(str, indices))}"
        if key not in cache:
            cache[key] = run(explainer, pixel_values, labels, curve, MoXI())
            print(f"{curve} exact: {cache[key]['seconds']:.0f} s, {cache[key]['tokens']:,} token-forwards", flush=True)
            if args.cache:
                args.cache.write_text(json.dumps(cache))
        exact = cache[key]
        rows = []
        for candidates, refresh, warmup in settings:
            method = MoXI(budget="fast", candidates=candidates, refresh=refresh, warmup=warmup)
            budgeted = run(explainer, pixel_values, labels, curve, method)
            row = {"candidates": candidates, "refresh": refresh, "warmup": warmup, **compare(exact, budgeted),
                   "tokens": budgeted["tokens"], "seconds": budgeted["seconds"], "needed": budgeted["needed"]}
            rows.append(row)
            print(f"{curve} {candidates}:{refresh}:{warmup}: {row['work']:.1f}x less work, {row['time']:.1f}x less "
                  f"time ({row['cpu_time']:.1f}x CPU), dAcc {row['d_acc']:+.4f} (|{row['abs_acc']:.4f}|), "
                  f"dConf {row['d_conf']:+.4f} (|{row['abs_conf']:.4f}|), "
                  f"needed within one {100 * row['needed_within_one']:.0f} %", flush=True)
        results["curves"][curve] = {"exact": {k: exact.get(k) for k in ("tokens", "seconds", "cpu_seconds", "needed")},
                                    "rows": rows}
    print("\n" + format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def format_table(results: dict) -> str:
    lines = ["| curve | candidates : refresh : warmup | less work (token-forwards) | less time (wall) | less CPU time "
             "| Δ acc-AUC (mean \\|Δ\\|) | Δ conf-AUC (mean \\|Δ\\|) | needed within one | needed equal |",
             "|---|---|---:|---:|---:|---|---|---:|---:|"]
    for curve, entry in results["curves"].items():
        for row in entry["rows"]:
            lines.append(f"| {curve} | {row['candidates']} : {row['refresh']} : {row['warmup']} | {row['work']:.1f}× | "
                         f"{row['time']:.1f}× | {row['cpu_time']:.1f}× | {row['d_acc']:+.4f} ({row['abs_acc']:.4f}) | "
                         f"{row['d_conf']:+.4f} ({row['abs_conf']:.4f}) | {100 * row['needed_within_one']:.0f} % | "
                         f"{100 * row['needed_equal']:.0f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
