"""The Gradio page: inputs, the explain and compare handlers, and launching it offline.

Gradio is imported here only (the ``[demo]`` extra); the work is done by :class:`~.core.DemoModel`.
"""


import html
import os
import threading

from ..errors import MoXIError
from ..explainer import Explainer
from ..methods import CURVES
from ..value import REWARDS
from .core import Cancelled, DemoModel, grid_choices, label_choices

__all__ = [
    "CANCELLED_HTML",
    "MAX_FILE_SIZE",
    "build_demo",
    "import_gradio",
    "launch_demo",
    "needed_html",
    "parse_grid",
    "parse_label",
]

#: the largest upload the server accepts
MAX_FILE_SIZE = "20mb"
PREDICTION = "prediction"
ONE_PER_PATCH = "patch"

_CSS = """
#patches-needed { font-size: 1.05rem; min-height: 2.2rem; }
#patches-needed-count { font-weight: 700; font-size: 1.35rem; }
#image img, #samples img { image-rendering: pixelated; }
#image img { width: 100%; height: 100%; object-fit: contain; }
"""


def import_gradio():
    """The gradio module, offline (no analytics or update checks), or a clear error without the extra."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio
    except ImportError:
        raise MoXIError("the web demo needs Gradio: pip install -e \".[demo]\" (or pip install \"gradio>=6,<7\")") from None
    return gradio


def _parse_choice(value, default: str, what: str) -> int | None:
    """A dropdown's value as an int (None for its ``default`` entry), or a clear error."""
    if value in (None, "", default):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MoXIError(f"{what} {value!r} is not a number") from None


def parse_label(value) -> int | None:
    """The label dropdown's value as a class index (None: explain the prediction)."""
    return _parse_choice(value, PREDICTION, "label")


def parse_grid(value) -> int | None:
    """The players-grid dropdown's value as G (None: one player per patch)."""
    return _parse_choice(value, ONE_PER_PATCH, "players grid")


def needed_html(result) -> str:
    """The "patches needed" line; the number sits in ``#patches-needed-count``."""
    explanation = result.explanation
    count = str(explanation.patches_needed)
    text = result.needed_text
    if text.startswith(count + " "):  # the number is shown once, large
        text = text[len(count) + 1:]
    return (f'<span id="patches-needed-count">{count}</span> '
            f'<span id="patches-needed-text">{html.escape(text)} '
            f'({html.escape(explanation.method)}, {explanation.curve}; the model predicts {explanation.predicted})</span>')


CANCELLED_HTML = '<span id="cancelled">Cancelled: the request stopped before it finished.</span>'


class PageHandlers:
    """The functions the page's buttons call, for one :class:`DemoModel` (user mistakes become ``gr.Error``)."""

    def __init__(self, demo_model: DemoModel):
        self.gr = import_gradio()
        self.model = demo_model
        self._running: dict[str, set[threading.Event]] = {}  # per browser session: its requests under way
        self._guard = threading.Lock()

    @staticmethod
    def _session(request) -> str:
        return getattr(request, "session_hash", None) or "local"

    def _run(self, work, image, curve, label, reward, grid, request, progress):
        """``work(image, curve, label, reward, grid, progress=, cancel=)`` with this session's cancel event.

        Returns None when cancelled; a user mistake becomes a ``gr.Error`` message (no trace).
        """
        gr = self.gr
        progress = progress or gr.Progress()
        event = threading.Event()
        key = self._session(request)
        with self._guard:
            self._running.setdefault(key, set()).add(event)
        try:
            return work(image, curve=curve, label=parse_label(label), reward=reward, players_grid=parse_grid(grid),
                        progress=lambda fraction, text: progress(fraction, desc=text), cancel=event)
        except Cancelled:
            return None
        except MoXIError as error:
            raise gr.Error(str(error)) from None
        finally:
            with self._guard:
                self._running.get(key, set()).discard(event)
                if not self._running.get(key):
                    self._running.pop(key, None)

    def explain(self, image, method, curve, label, reward, grid, request=None, progress=None):
        """(heatmap, "patches needed" HTML, curve, interaction picture update, explanation.json path)."""
        gr = self.gr
        result = self._run(lambda *args, **kwargs: self.model.explain(*args, method=method, **kwargs),
                           image, curve, label, reward, grid, request, progress)
        if result is None:
            return gr.skip(), CANCELLED_HTML, gr.skip(), gr.skip(), gr.skip()
        interactions = gr.update(value=result.interactions, visible=result.interactions is not None)
        return result.heatmap, needed_html(result), result.curve, interactions, result.json_path

    def compare(self, image, curve, label, reward, grid, request=None, progress=None):
        """The compare sheet of every method that applies."""
        result = self._run(self.model.compare, image, curve, label, reward, grid, request, progress)
        if result is None:
            self.gr.Warning("cancelled: the comparison stopped")
            return self.gr.skip()
        return result[0]

    def cancel(self, request=None) -> int:
        """Cancel this session's running requests; returns how many were running."""
        with self._guard:
            events = list(self._running.get(self._session(request), ()))
        for event in events:
            event.set()
        return len(events)


def build_demo(demo_model: DemoModel | Explainer, samples=None,
               title: str = "MoXI: which patches does the classifier need?"):
    """The page (a ``gr.Blocks``) for one loaded model (an Explainer, or a DemoModel that wraps one).

    ``samples``: image paths shown as clickable examples (with an Explainer). ``launch_demo`` serves it.
    """
    gr = import_gradio()
    if isinstance(demo_model, Explainer):
        demo_model = DemoModel(demo_model, samples)
    explainer = demo_model.explainer
    methods = demo_model.methods
    rows, cols = explainer.players.patch_grid
    handlers = PageHandlers(demo_model)

    # Gradio finds the request and the progress bar by these parameters.
    def explain(image, method, curve, label, reward, grid, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        return handlers.explain(image, method, curve, label, reward, grid, request, progress)

    def compare(image, curve, label, reward, grid, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        return handlers.compare(image, curve, label, reward, grid, request, progress)

    def cancel(request: gr.Request):  # the running handler stops at its next chunk and says so itself
        handlers.cancel(request)

    with gr.Blocks(title="moxi demo", analytics_enabled=False) as demo:
        gr.Markdown(f"## {title}\nModel: `{demo_model.title}` · {rows}x{cols} patches · "
                    "the heatmap ranks the patches the method puts first; the hottest are the ones needed.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                image = gr.Image(type="pil", sources=["upload", "clipboard", "webcam"], label="image",
                                 elem_id="image", height=220)
                if demo_model.samples:
                    gr.Examples([[os.fspath(path)] for path in demo_model.samples], inputs=[image],
                                label="sample images (click one)", elem_id="samples",
                                examples_per_page=len(demo_model.samples))
                with gr.Row():
                    method = gr.Dropdown(methods, value="moxi" if "moxi" in methods else methods[0],
                                         label="method", elem_id="method", min_width=120)
                    curve = gr.Radio(list(CURVES), value="insertion", label="curve", elem_id="curve-choice",
                                     min_width=120)
                with gr.Row():
                    run = gr.Button("Explain", variant="primary", elem_id="run")
                    stop = gr.Button("Cancel", variant="stop", elem_id="cancel")
                gr.Markdown("insertion: the players needed to predict the label; deletion: the players whose "
                            "removal changes the prediction.", elem_id="curve-help")
                with gr.Accordion("options", open=False):
                    label = gr.Dropdown([("the prediction", PREDICTION)] + [(t, str(i)) for t, i in
                                                                             label_choices(explainer)],
                                        value=PREDICTION, label="label to explain", elem_id="label")
                    grid = gr.Dropdown([(f"one per patch ({rows}x{cols})", ONE_PER_PATCH)]
                                       + [(f"{g}x{g} players", str(g)) for g in grid_choices(explainer)],
                                       value=ONE_PER_PATCH, label="players grid", elem_id="players-grid")
                    reward = gr.Dropdown(list(REWARDS), value=explainer.reward, label="reward", elem_id="reward")
            with gr.Column(scale=2):
                with gr.Tab("explanation", elem_id="explanation-tab"):
                    needed = gr.HTML(elem_id="patches-needed")
                    with gr.Row():
                        heatmap = gr.Image(type="pil", label="heatmap", elem_id="heatmap", interactive=False,
                                           height=330)
                        curve_plot = gr.Image(type="pil", label="curve", elem_id="curve", interactive=False,
                                              height=330)
                    interactions = gr.Image(type="pil", label="interactions (MoXI)", elem_id="interactions",
                                            interactive=False, visible=False, show_label=False)
                    download = gr.File(label="explanation.json", elem_id="explanation-json")
                with gr.Tab("compare all methods", elem_id="compare-tab"):
                    compare_button = gr.Button("Compare all methods", elem_id="compare")
                    sheet = gr.Image(type="pil", label="compare sheet", elem_id="compare-sheet", interactive=False)
        inputs = [image, method, curve, label, reward, grid]
        run.click(explain, inputs, [heatmap, needed, curve_plot, interactions, download])
        compare_button.click(compare, [image, curve, label, reward, grid], [sheet])
        stop.click(cancel, None, None, queue=False)
    return demo


def launch_demo(demo, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs):
    """Serve the page (blocks until stopped); ``share`` opens a public link through Gradio's servers."""
    gr = import_gradio()
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],  # no web fonts: works offline
                           font_mono=["ui-monospace", "monospace"])
    demo.queue(default_concurrency_limit=4)
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE,
                       show_error=True, footer_links=[], ssr_mode=False, theme=theme, css=_CSS, **kwargs)

