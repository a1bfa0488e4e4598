"""How torch's CPU thread pool copes with another busy process: the measurement behind moxi's thread policy.

One worker process per setting (the OpenMP runtime reads its environment once, when torch loads
it) loads the explainer and explains once to warm up. Then, round after round, the workers explain
the same image one at a time, each setting once per round, while the others wait on a pipe; so
the machine's other load (on a shared machine it changes by the minute) touches every setting of
a round alike, and the ratio of each setting to one thread is taken within the round. Blocks of
rounds alternate between nothing else of ours running and one busy process next to the workers (a
pure-Python spin loop: one core's worth of load). The thread environment of the shell running
this script is ignored: every setting sets its own.

    python scripts/thread_contention.py                       # the default model: moxi and full-shapley
    python scripts/thread_contention.py --workloads vit-small  # a larger ViT, where threads can pay off
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: name -> (torch threads or None for torch's default, extra environment)
SETTINGS = {
    "1 thread": (1, {}),
    "default threads": (None, {}),
    "default threads, OMP_WAIT_POLICY=PASSIVE": (None, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "1 thread, OMP_WAIT_POLICY=PASSIVE": (1, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "default threads, GOMP_SPINCOUNT=10000": (None, {"GOMP_SPINCOUNT": "10000"}),
    "default threads, GOMP_SPINCOUNT=100000": (None, {"GOMP_SPINCOUNT": "100000"}),
}
#: what runs unless --settings says otherwise
DEFAULT_SETTINGS = list(SETTINGS)[:4]
BASELINE = "1 thread"
BACKGROUNDS = ("nothing else of ours", "one busy process")
#: name -> what a worker explains (see ``worker``)
WORKLOADS = {
    "moxi": "the default model (7x7 patches), moxi (insertion) on one sample digit",
    "full-shapley": "the default model, full-shapley with 20 samples per player on one sample digit",
    "vit-small": "a random ViT, 384 wide, 6 layers, 224x224 images (196 patches), self-shapley on a 7x7 players grid",
}
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
                     "MOXI_THREADS")


def worker(workload: str, threads: int | None) -> None:
    """Runs in a measuring process: after 'ready', explains once per line read from stdin and prints the seconds."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from PIL import Image

    from moxi_hf import Explainer
    from moxi_hf.defaults import default_model_path, default_sample_images

    options: dict = {}
    if workload == "vit-small":
        import tempfile

        from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

        torch.manual_seed(0)
        folder = tempfile.mkdtemp(prefix="moxi-threads-")
        ViTForImageClassification(ViTConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
                                             intermediate_size=1536, num_labels=10)).save_pretrained(folder)
        ViTImageProcessor().save_pretrained(folder)
        explainer = Explainer.from_pretrained(folder, players_grid=7)
        with Image.open(default_sample_images()[0]) as digit:
            image = digit.convert("RGB").resize((224, 224))
        method = "self-shapley"
    else:
        explainer = Explainer.from_pretrained(default_model_path())
        image = default_sample_images()[1]
        method = workload
        if workload == "full-shapley":
            options = {"num_samples": 20}
    explainer.explain(image, method=method, **options)  # warm-up: first-call allocations and kernel choice
    print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        explainer.explain(image, method=method, **options)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def start_worker(workload: str, setting: str) -> subprocess.Popen:
    threads, extra = SETTINGS[setting]
    env = {key: value for key, value in os.environ.items() if key not in _THREAD_VARIABLES}
    env.update(extra, PYTHONPATH=str(REPO))
    command = [sys.executable, __file__, "--worker", workload] + (["--threads", str(threads)] if threads else [])
    process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = json.loads(process.stdout.readline())
    process.threads = ready["threads"]
    return process


def timed(process: subprocess.Popen) -> float:
    process.stdin.write("go\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())["seconds"]


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.exists() else []
    return names[0] if names else "unknown CPU"


def measure(workload: str, settings: list[str], rounds: int, block: int) -> dict:
    """{(background, setting): [seconds per round]} and {(background, setting): [ratio to BASELINE per round]}."""
    workers = {setting: start_worker(workload, setting) for setting in settings}
    times: dict = {}
    ratios: dict = {}
    try:
        for number in range(rounds):
            background = BACKGROUNDS[(number // block) % 2]
            helper = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if background != BACKGROUNDS[0] \
                else None
            try:
                if helper is not None:
                    time.sleep(0.2)  # the spin loop is running before the round starts
                order = settings if number % 2 == 0 else settings[::-1]  # neither goes first every time
                seconds = {setting: timed(workers[setting]) for setting in order}
            finally:
                if helper is not None:
                    helper.kill()
                    helper.wait()
            for setting, value in seconds.items():
                times.setdefault((background, setting), []).append(value)
                ratios.setdefault((background, setting), []).append(value / seconds[BASELINE])
            print(f"{workload} round {number + 1:>2} ({background}, load {os.getloadavg()[0]:.1f}): "
                  + ", ".join(f"{setting} {seconds[setting]:.3f} s" for setting in settings), flush=True)
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait(timeout=60)
    return {"times": times, "ratios": ratios, "threads": {s: workers[s].threads for s in settings}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=["moxi", "full-shapley"])
    parser.add_argument("--rounds", type=int, default=12, help="rounds per workload (each setting once per round)")
    parser.add_argument("--block", type=int, default=3, help="rounds in a row with the same background")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=DEFAULT_SETTINGS,
                        help=f"the settings compared ({BASELINE!r} always among them)")
    parser.add_argument("--json", type=Path, help="also write every timing to this file")
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.threads)
        return
    settings = list(dict.fromkeys([BASELINE, *args.settings]))
    print(f"{os.cpu_count()} logical CPUs ({cpu_name()}); load average before: {os.getloadavg()[0]:.1f}")
    results = {workload: measure(workload, settings, args.rounds, args.block) for workload in args.workloads}
    print("\nmedian seconds per explanation, and the median over rounds of its ratio to one thread in the same round")
    for workload, result in results.items():
        print(f"\n{workload}: {WORKLOADS[workload]}")
        print(f"| setting (torch threads) | {BACKGROUNDS[0]} | ratio | {BACKGROUNDS[1]} | ratio |\n|---|---|---|---|---|")
        for setting in settings:
            cells = []
            for background in BACKGROUNDS:
                cells += [f"{statistics.median(result['times'][(background, setting)]):.3f} s",
                          f"{statistics.median(result['ratios'][(background, setting)]):.2f}"]
            print(f"| {setting} ({result['threads'][setting]}) | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({workload: {f"{b} / {s}": values for (b, s), values in result["times"].items()}
                                         for workload, result in results.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
