#!/usr/bin/env python
"""Insertion/deletion evaluation, the same code as ``moxi evaluate`` (all its options apply).

    python scripts/evaluate.py --model google/vit-base-patch16-224 --per-class 1 --output-dir vit-b
    accelerate launch --multi_gpu --num_processes 4 scripts/evaluate.py --model ... --output-dir ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a source checkout without `pip install`

from moxi_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
