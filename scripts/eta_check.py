#!/usr/bin/env python
"""How right the progress bar's ETA and the pre-run estimate are, against the real time.

Explains sample digits of a model (default: the 196-player judge, ``models/moxi-vit-mnist-196``)
with MoXI, for each curve and budget, through the same :class:`moxi_hf.progress.WorkBar` the CLI
shows. Per run it reports the estimate printed before a run (:func:`moxi_hf.progress.estimate_seconds`),
the ETA the bar shows once 10 % of the token-forwards are done (elapsed + remaining at the average
rate, as the bar computes it), and the real time; each as a ratio to the real time.

Usage::

    python scripts/eta_check.py --images 2 --json eta.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from moxi_hf import Explainer
from moxi_hf.progress import WorkBar, estimate_seconds

ROOT = Path(__file__).resolve().parents[1]


class TimedBar(WorkBar):
    """A WorkBar that notes the ETA it would show when 10 % of its total is done."""

    def __init__(self, total: int, desc: str):
        super().__init__(total, desc, disable=True)
        self.start = time.perf_counter()
        self.eta_at_tenth: float | None = None

    def _count(self) -> None:
        super()._count()
        if self.eta_at_tenth is None and self.total and self.done >= 0.1 * self.total:
            elapsed = time.perf_counter() - self.start
            self.eta_at_tenth = elapsed * self.total / self.done  # elapsed + remaining at the average rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "moxi-vit-mnist-196")
    parser.add_argument("--images", type=int, default=2, help="sample digits explained together (default: 2)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    explainer = Explainer.from_pretrained(str(args.model))
    files = sorted((args.model / "samples").glob("*.png"))[: args.images]
    pixel_values, _ = explainer.preprocess([str(path) for path in files])
    rows = []
    for curve in ("insertion", "deletion"):
        for budget in ("exact", "fast"):
            options = {"moxi": {"budget": budget}}
            cost = explainer.cost(["moxi"], [curve], options=options)
            estimate, tokens = estimate_seconds(explainer, cost, len(files))
            bar = TimedBar(tokens, f"{curve} {budget}")
            start = time.perf_counter()
            explainer.explain_methods(pixel_values, ["moxi"], [curve], options=options, on_chunk=bar)
            bar.close()
            real = time.perf_counter() - start
            row = {"curve": curve, "budget": budget, "images": len(files), "real_s": real, "estimate_s": estimate,
                   "eta_at_10pct_s": bar.eta_at_tenth, "tokens_planned": tokens, "tokens_done": bar.done}
            rows.append(row)
            print(f"{curve:9} {budget:5}: real {real:6.1f} s; estimate before {estimate:6.1f} s "
                  f"({estimate / real:.2f}x); ETA at 10 % {bar.eta_at_tenth:6.1f} s ({bar.eta_at_tenth / real:.2f}x); "
                  f"token-forwards done/planned {bar.done / tokens:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
