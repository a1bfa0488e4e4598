"""Time pipeline("image-explanation") against Explainer.explain on the six sample digits, in one run.

    OMP_NUM_THREADS=1 python scripts/benchmark_pipeline.py --rounds 11
    OMP_NUM_THREADS=1 python scripts/benchmark_pipeline.py --model models/moxi-clip-mnist   # zero-shot CLIP

Each round runs every case once, in turn, so a disturbance of the machine falls on all of them;
the table gives each case's median wall time, its fastest round, its median CPU time (this
process; less disturbed by other work on a shared machine), and the ratios of the medians to
explaining the digits one by one with ``Explainer.explain``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from transformers import pipeline

import moxi_hf.pipelines  # noqa: F401 - registers the task
from moxi_hf import Explainer
from moxi_hf.defaults import default_model_path, sample_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--method", default="moxi")
    parser.add_argument("--model", default=None,
                        help="a model folder with samples/ (default: the embedded default model); a zero-shot "
                             "model explains the candidate labels its config records")
    args = parser.parse_args()
    model = args.model or str(default_model_path())
    digits = [str(path) for path in sample_images(model)]
    if not digits:
        parser.error(f"{model} has no samples/ images")
    explain = pipeline("image-explanation", model=model, device="cpu", method=args.method)
    explainer = Explainer.from_pretrained(model)
    cases = {
        "Explainer.explain, one by one": lambda: [explainer.explain(digit, method=args.method) for digit in digits],
        "pipeline, batch_size=1": lambda: explain(digits),
        f"pipeline, batch_size={len(digits)}": lambda: explain(digits, batch_size=len(digits)),
        f"Explainer.explain_batch ({len(digits)})": lambda: explainer.explain_batch(digits, method=args.method),
    }
    orders = [result[0]["order"] for result in explain(digits)]
    assert orders == [explanation.order for explanation in cases["Explainer.explain, one by one"]()]
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, run in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    base = "Explainer.explain, one by one"
    base_wall, base_cpu = statistics.median(wall[base]), statistics.median(cpu[base])
    print(f"{model}: {len(digits)} digits, {args.method}, {args.rounds} rounds; same orders: yes")
    print(f"{'case':34s} {'wall s':>7s} {'fastest':>8s} {'ratio':>6s} {'CPU s':>6s} {'ratio':>6s}")
    for name in cases:
        median, median_cpu = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:34s} {median:7.2f} {min(wall[name]):8.2f} {median / base_wall:6.2f} {median_cpu:6.2f} "
              f"{median_cpu / base_cpu:6.2f}")


if __name__ == "__main__":
    main()
