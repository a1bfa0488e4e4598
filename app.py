"""Hugging Face Space entry point: ``moxi demo`` on the embedded default model, from this repository's files.

A Space installs ``requirements.txt`` before it copies the repository, so the package is used from
this folder (not installed); the model and its sample digits come from ``models/moxi-vit-mnist``.
Set ``MOXI_DEMO_MODEL`` (a folder or Hub id) in the Space's settings to serve another model.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from moxi_hf.threads import apply_thread_policy

apply_thread_policy()  # as `moxi demo`: before torch is imported

from moxi_hf.demo import build_demo, launch_demo, load_demo_model  # noqa: E402 - after the thread policy

demo_model = load_demo_model(os.environ.get("MOXI_DEMO_MODEL") or None)
demo = build_demo(demo_model)

if __name__ == "__main__":
    launch_demo(demo, host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
                port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
