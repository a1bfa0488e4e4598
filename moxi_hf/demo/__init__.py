"""``moxi demo``: a web page (Gradio) that explains an uploaded image in the browser.

:mod:`.core` holds the plain functions behind the page (loading once, checking inputs, explaining
side by side with per-request progress and cancelling); :mod:`.figures` renders the library's
pictures; :mod:`.app` builds the Gradio page and needs the ``[demo]`` extra.
"""

from .core import Cancelled, DemoModel, DemoResult, check_image, load_demo_model

__all__ = ["Cancelled", "DemoModel", "DemoResult", "build_demo", "check_image", "launch_demo", "load_demo_model"]


def build_demo(*args, **kwargs):
    """The Gradio page for a :class:`DemoModel` (see :func:`moxi_hf.demo.app.build_demo`)."""
    from .app import build_demo as build

    return build(*args, **kwargs)


def launch_demo(*args, **kwargs):
    """Serve a page built by :func:`build_demo` (see :func:`moxi_hf.demo.app.launch_demo`)."""
    from .app import launch_demo as launch

    return launch(*args, **kwargs)
