#!/usr/bin/env python
"""full-shapley's samplers against exact Shapley values, on a game small enough to enumerate.

The game: the shipped model ``models/moxi-vit-mnist`` (7×7 patches of a 28 px digit) with
``players_grid=(7, 1)``: 7 players, each one row of 7 patches, so all 2^7 = 128 coalitions can be
evaluated and the exact Shapley values computed (``sampler="exact"``). The target is the model's
prediction. For the first ``--images`` sample digits, the permutation (default) and original
samplers are run at each ``--num-samples`` M with seeds 0..``--seeds``−1; per sampler and M the
script prints the mean absolute error |φ̂ − φ| over images, players and seeds (log-odds), the
largest single error, how many images got exactly the Shapley order, the value calls per image
and the wall time of one run over all images (the mean over seeds; the images share forward
passes). All timings come from the same process; run it with the thread count you want to measure.

    OMP_NUM_THREADS=1 python scripts/shapley_accuracy.py                    # 5 digits, M = 200 and 2000
    python scripts/shapley_accuracy.py --num-samples 50 200 2000 --seeds 3 --json accuracy.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a source checkout without `pip install`

from moxi_hf import Explainer, get_method

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "moxi-vit-mnist"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def timed(method, game) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    scores = method.attribute(game, "insertion").scores
    return scores.double(), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5, help="sample digits (default: 5)")
    parser.add_argument("--num-samples", type=int, nargs="+", default=[200, 2000], metavar="M",
                        help="M for both samplers (default: 200 2000)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N−1 per sampler and M (default: 1)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)

    files = sorted((MODEL_DIR / "samples").glob("digit_*.png"))[: args.images]
    explainer = Explainer.from_pretrained(MODEL_DIR, players_grid=(7, 1))
    pixel_values, _ = explainer.preprocess(files)
    game = explainer.value_function(pixel_values, explainer.predict(pixel_values).tolist())
    exact_method = get_method("full-shapley", sampler="exact")
    exact, exact_s = timed(exact_method, game)
    exact_orders = torch.sort(exact, dim=1, descending=True, stable=True).indices

    rows = [{"sampler": "exact", "num_samples": None, "mae": 0.0, "max_error": 0.0, "same_order": len(files),
             "value_calls": exact_method.cost(game.n_players, "insertion").coalitions, "seconds": exact_s}]
    for num_samples in args.num_samples:
        for sampler in ("permutation", "original"):
            errors, seconds, same = [], [], 0
            for seed in range(args.seeds):
                method = get_method("full-shapley", sampler=sampler, num_samples=num_samples, seed=seed)
                scores, elapsed = timed(method, game)
                errors.append((scores - exact).abs())
                seconds.append(elapsed)
                orders = torch.sort(scores, dim=1, descending=True, stable=True).indices
                same += int((orders == exact_orders).all(dim=1).sum())
            error = torch.stack(errors)
            rows.append({"sampler": sampler, "num_samples": num_samples, "mae": float(error.mean()),
                         "max_error": float(error.max()), "same_order": same / args.seeds,
                         "value_calls": method.cost(game.n_players, "insertion").coalitions,
                         "seconds": sum(seconds) / len(seconds)})

    machine = f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    scale = float(exact.abs().mean())
    print(f"{len(files)} sample digits, 7 players (rows of the 7x7 patch grid), {args.seeds} seed(s); {machine}")
    print(f"exact Shapley values: mean |phi| = {scale:.3f} log-odds")
    print("| sampler | M | MAE (log-odds) | max error | images in the exact order | value calls / image | wall s (all images) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['sampler']} | {row['num_samples'] or '-'} | {row['mae']:.4f} | {row['max_error']:.3f} | "
              f"{row['same_order']:.3g} of {len(files)} | {row['value_calls']:,} | {row['seconds']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "images": [f.name for f in files],
                                               "mean_abs_shapley": scale, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
