"""``moxi demo``: serve the web page that explains an image in the browser (needs the ``[demo]`` extra)."""

from __future__ import annotations

import argparse
import sys

from ..errors import MoXIError
from ..options import DTYPES
from .common import DEVICE_CHOICES, add_sub_command, add_trust_flag, positive_int

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_sub_command(subparsers, "demo", run, help="a web page to explain images in the browser (Gradio)",
                             description="Serve a page that explains an uploaded image (offline on the "
                                         "embedded default model unless --model is given).")
    parser.add_argument("--model", metavar="PATH_OR_ID", help="local folder or Hub id (default: moxi-vit-mnist)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    add_trust_flag(parser)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 listens on every interface")
    parser.add_argument("--port", type=positive_int, default=7860)
    parser.add_argument("--share", action="store_true", help="a public link through Gradio's servers (network)")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..demo.app import build_demo, import_gradio, launch_demo
    from ..demo.core import load_demo_model

    import_gradio()  # a clear message before loading anything when the extra is missing
    if args.port > 65535:
        raise MoXIError(f"--port {args.port} is not a TCP port (1..65535)")
    if args.share and not args.quiet:
        print("moxi: --share needs the network: it opens a public link through Gradio's share servers",
              file=sys.stderr)
    demo_model = load_demo_model(args.model, args.dtype, args.device, trust_remote_code=args.trust_remote_code)
    if not args.quiet:
        print(f"moxi demo: serving {demo_model.title} on http://{args.host}:{args.port} (Ctrl+C stops it)",
              flush=True)
    launch_demo(build_demo(demo_model), host=args.host, port=args.port, share=args.share, quiet=args.quiet)
    return 0
