"""The Gradio page: its intro, inputs, the explain and compare handlers, and launching it offline.

Gradio is imported here only (the ``[demo]`` extra); the work is done by :class:`~.core.DemoModel`.
A run goes in three steps: ``start`` (locks the run buttons and clears the previous results at once),
the run itself (its progress bar in one place), then ``finish`` (unlocks the buttons, also after an
error or a cancel).
"""


import html
import os
import threading

from ..artifacts.card import PAPER_URL
from ..errors import MoXIError
from ..explainer import Explainer
from ..labels import label_text
from ..methods import CURVES
from ..value import REWARDS
from .core import Cancelled, DemoModel, Upload, candidate_labels_from_text, grid_choices, label_choices

__all__ = [
    "CANCELLED_HTML",
    "MAX_FILE_SIZE",
    "build_demo",
    "import_gradio",
    "intro_markdown",
    "label_dropdown",
    "launch_demo",
    "model_inputs",
    "needed_html",
    "parse_grid",
    "parse_label",
]

#: the largest upload the server accepts
MAX_FILE_SIZE = "20mb"
PREDICTION = "prediction"
#: the corner buttons of a picture (no "share": it posts to the Hub, and the page works offline)
PICTURE_BUTTONS = ["download", "fullscreen"]
ONE_PER_PATCH = "patch"

_CSS = """
#intro p { margin: 0.15rem 0; }
#patches-needed, #compare-status { font-size: 1.05rem; min-height: 3.2rem; }
#patches-needed-count { font-weight: 700; font-size: 1.35rem; }
#image img, #samples img { image-rendering: pixelated; }
#image img { width: 100%; height: 100%; object-fit: contain; }
#samples .container { width: 3.3rem; height: 3.3rem; }
#samples img { width: 100%; height: 100%; object-fit: cover; }
#compare { border: 2px solid var(--color-accent); color: var(--color-accent); font-weight: 600; }
#compare-heatmaps .grid-wrap { max-height: none; overflow-y: visible; }
.cancelled { font-weight: 600; }
#patches-needed .error, #compare-status .error { color: var(--error-text-color); font-weight: 600; }
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
    """The "patches needed" line: the number (in ``#patches-needed-count``) when the sentence starts with it,
    the sentence, the method and curve, and the prediction unless the sentence names it already."""
    explanation = result.explanation
    count, text = str(explanation.patches_needed), result.needed_text
    head = ""
    if text.startswith(count + " "):  # the number is shown once, large
        head, text = f'<span id="patches-needed-count">{count}</span> ', text[len(count) + 1:]
    details = f"{explanation.method}, {explanation.curve}"
    if "the model predicts" not in text:
        details += f"; the model predicts {explanation.predicted_text}"
    return f'{head}<span id="patches-needed-text">{html.escape(text)} ({html.escape(details)})</span>'


WELCOME_HTML = '<span class="welcome">Pick a sample or upload an image, then click <b>Explain</b>.</span>'
CANCELLED_HTML = '<span class="cancelled">Cancelled: the request stopped before it finished.</span>'


def error_html(error: Exception) -> str:
    """A user mistake as the page shows it, in place of the results: our one line."""
    return f'<span class="error" role="alert">{html.escape(str(error))}</span>'


def intro_markdown(demo_model: DemoModel) -> str:
    """What the page is, in a few lines: MoXI, players and coalitions, the model and what it expects."""
    rows, cols = demo_model.explainer.players.patch_grid
    note = f" · **Input**: {demo_model.input_note}" if demo_model.input_note else ""
    zero_shot = ("\n\nA zero-shot model: its classes are the **candidate labels** below, each put into the prompt "
                 "template and compared with the image; type your own, separated by commas.") \
        if demo_model.explainer.zero_shot else ""
    return (
        "**MoXI** (Model eXplanation by Interactions) shows which patches of an image a classifier needs for its "
        "answer. Each patch is a *player*; a *coalition* is a set of players the model sees, every other patch "
        "removed. MoXI picks players one by one, each time the one that most raises the model's confidence given "
        "those already picked, so patches that only matter together (their *interactions*) are found; the heatmap "
        f"colours the players needed, darkest first. [The paper]({PAPER_URL}) · the moxi-hf docs: `docs/demo.md`, "
        "`docs/algorithm.md`\n\n"
        f"Model: `{demo_model.title}` · {rows}x{cols} patches{note}{zero_shot}"
    )


def model_inputs(gr, demo_model: DemoModel) -> dict:
    """The inputs that depend on the model: keyword -> component (none for a classifier).

    The page shows them in a row of their own (the row is hidden when there are none) and passes each
    value to :meth:`DemoModel.explain` and :meth:`DemoModel.compare` under its keyword. A zero-shot model
    gets its candidate labels (comma-separated) and prompt template (one per line), each prefilled with
    the model's own.
    """
    explainer = demo_model.explainer
    if not explainer.zero_shot:
        return {}
    templates = explainer.hypothesis_template
    templates = [templates] if isinstance(templates, str) else list(templates or ())
    return {
        "candidate_labels": gr.Textbox(", ".join(explainer.candidate_labels), label="candidate labels (comma-separated)",
                                       elem_id="candidate-labels", lines=1, max_lines=4, scale=3, min_width=240,
                                       placeholder="a cat, a dog"),
        "hypothesis_template": gr.Textbox("\n".join(templates), label="prompt template ({} is the label)",
                                          elem_id="hypothesis-template", lines=max(1, len(templates)),
                                          max_lines=max(4, len(templates)), scale=2, min_width=160),
    }


def label_dropdown(gr, names, value=PREDICTION):
    """The "label to explain" choices for classes named ``names`` (index order), with "the prediction" first;
    ``value`` stays selected when it is still one of them."""
    choices = [("the prediction", PREDICTION)] + [(text, str(index)) for text, index in label_choices(names)]
    return gr.update(choices=choices, value=value if value in {v for _, v in choices} else PREDICTION)


class PageHandlers:
    """The functions the page's buttons call, for one :class:`DemoModel` (a user mistake becomes a line on the page)."""

    def __init__(self, demo_model: DemoModel):
        self.gr = import_gradio()
        self.model = demo_model
        self._running: dict[str, set[threading.Event]] = {}  # per browser session: its requests under way
        self._guard = threading.Lock()

    @staticmethod
    def _session(request) -> str:
        return getattr(request, "session_hash", None) or "local"

    def _run(self, work, image, curve, label, reward, grid, request, progress, **extra):
        """``work(image, curve, label, reward, grid, progress=, cancel=, **extra)`` with this session's cancel event.

        Returns (its result, None), or (None, the line the page shows instead) when it was cancelled or the
        user made a mistake (our one-line message; nothing is logged for it).
        """
        progress = progress or self.gr.Progress()
        event = threading.Event()
        key = self._session(request)
        with self._guard:
            self._running.setdefault(key, set()).add(event)
        try:
            return work(uploaded(image), curve=curve, label=parse_label(label), reward=reward,
                        players_grid=parse_grid(grid),
                        progress=lambda fraction, text: progress(fraction, desc=text), cancel=event, **extra), None
        except Cancelled:
            return None, CANCELLED_HTML
        except MoXIError as error:
            return None, error_html(error)
        finally:
            with self._guard:
                self._running.get(key, set()).discard(event)
                if not self._running.get(key):
                    self._running.pop(key, None)

    def explain(self, image, method, curve, label, reward, grid, request=None, progress=None, **extra):
        """("patches needed" HTML, heatmap, curve, interaction picture update, explanation.json path); after a
        cancel or a mistake, the line that says so and nothing else."""
        gr = self.gr
        result, stopped = self._run(lambda *args, **kwargs: self.model.explain(*args, method=method, **kwargs),
                                    image, curve, label, reward, grid, request, progress, **extra)
        if result is None:
            return stopped, None, None, gr.update(value=None, visible=False), None
        interactions = gr.update(value=result.interactions, visible=result.interactions is not None)
        return needed_html(result), result.heatmap, result.curve, interactions, result.json_path

    def compare(self, image, curve, label, reward, grid, request=None, progress=None, **extra):
        """(status HTML, [(heatmap, caption)] per method, the curves picture)."""
        result, stopped = self._run(self.model.compare, image, curve, label, reward, grid, request, progress,
                                    **extra)
        if result is None:
            return stopped, None, None
        record = result.record
        status = (f"{len(result.heatmaps)} methods on label {html.escape(_label_text(record))}: each heatmap colours "
                  f"the method's {record['curve']} order by rank (1 = most important), its caption gives the AUC of "
                  f"that curve; below, p(label) as players are inserted or deleted")
        return status, result.heatmaps, result.curves

    def cancel(self, request=None) -> int:
        """Cancel this session's running requests; returns how many were running."""
        with self._guard:
            events = list(self._running.get(self._session(request), ()))
        for event in events:
            event.set()
        return len(events)


def _label_text(record: dict) -> str:
    return label_text(record["label"], record["label_name"])


def uploaded(payload):
    """What the image box sent, unprocessed (a dict with the stored file's ``path`` and ``orig_name``), as an
    :class:`Upload` that our own loader reads, so a file that is not an image gets our one-line error, named as
    the user named it; anything else (None, a PIL image from Python) passes through."""
    if not isinstance(payload, dict):
        return payload
    if not payload.get("path"):
        raise MoXIError("the image did not arrive; upload it again")
    return Upload(payload["path"], payload.get("orig_name") or os.path.basename(payload["path"]))


def _picture(gr, label: str, elem_id: str, **kwargs):
    """An output picture: a figure with its own title (no label over it), kept lossless (PNG)."""
    return gr.Image(type="pil", label=label, elem_id=elem_id, interactive=False, show_label=False,
                    buttons=PICTURE_BUTTONS, format="png", **kwargs)


def build_demo(demo_model: DemoModel | Explainer, samples=None, title: str | None = None):
    """The page (a ``gr.Blocks``) for one loaded model (an Explainer, or a DemoModel that wraps one).

    ``samples``: image paths shown as clickable examples (with an Explainer). ``title``: default, the question
    the page answers for this model. ``launch_demo`` serves it.
    """
    gr = import_gradio()
    if isinstance(demo_model, Explainer):
        demo_model = DemoModel(demo_model, samples)
    explainer = demo_model.explainer
    if title is None:
        kind = "zero-shot model" if explainer.zero_shot else "classifier"
        title = f"MoXI: which patches does the {kind} need?"
    methods = demo_model.methods
    rows, cols = explainer.players.patch_grid
    handlers = PageHandlers(demo_model)

    with gr.Blocks(title="moxi demo", analytics_enabled=False) as demo:
        gr.Markdown(f"## {title}", elem_id="title")
        gr.Markdown(intro_markdown(demo_model), elem_id="intro")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                image = gr.Image(type="filepath", sources=["upload", "clipboard", "webcam"], label="image",
                                 elem_id="image", height=200)
                if demo_model.samples:
                    gr.Examples([[os.fspath(path)] for path in demo_model.samples], inputs=[image],
                                label="sample images (click one)", elem_id="samples",
                                examples_per_page=len(demo_model.samples))
                with gr.Row():
                    run = gr.Button("Explain", variant="primary", elem_id="run", scale=2)
                    stop = gr.Button("Cancel", variant="stop", elem_id="cancel", scale=1)
                compare_button = gr.Button("Compare all methods", variant="secondary", elem_id="compare")
                model_row = gr.Row()
                with model_row:  # what a model adds (a zero-shot model: its candidate labels)
                    extra = model_inputs(gr, demo_model)
                model_row.visible = bool(extra)
                with gr.Row():
                    method = gr.Dropdown(methods, value="moxi" if "moxi" in methods else methods[0],
                                         label="method", elem_id="method", min_width=120)
                    curve = gr.Radio(list(CURVES), value="insertion", label="curve", elem_id="curve-choice",
                                     min_width=120)
                gr.Markdown("insertion: the players needed to predict the label; deletion: the players whose "
                            "removal changes the prediction.", elem_id="curve-help")
                with gr.Accordion("options", open=False):
                    label = gr.Dropdown(label_dropdown(gr, explainer.label_names())["choices"], value=PREDICTION,
                                        label="label to explain", elem_id="label")
                    grid = gr.Dropdown([(f"one per patch ({rows}x{cols})", ONE_PER_PATCH)]
                                       + [(f"{g}x{g} players", str(g)) for g in grid_choices(explainer)],
                                       value=ONE_PER_PATCH, label="players grid", elem_id="players-grid")
                    reward = gr.Dropdown(list(REWARDS), value=explainer.reward, label="reward", elem_id="reward")
            with gr.Column(scale=2), gr.Tabs(selected="explanation") as tabs:
                with gr.Tab("explanation", id="explanation", elem_id="explanation-tab"):
                    needed = gr.HTML(WELCOME_HTML, elem_id="patches-needed")
                    with gr.Row():  # side by side on a wide page, one above the other on a phone
                        heatmap = _picture(gr, "heatmap", "heatmap", height=360, min_width=320)
                        curve_plot = _picture(gr, "curve", "curve", height=360, min_width=320)
                    interactions = _picture(gr, "interactions (MoXI)", "interactions", visible=False)
                    download = gr.File(label="explanation.json", elem_id="explanation-json")
                with gr.Tab("compare all methods", id="compare", elem_id="compare-tab"):
                    compare_status = gr.HTML(elem_id="compare-status")
                    gallery = gr.Gallery(label="heatmaps", elem_id="compare-heatmaps", columns=2, height="auto",
                                         object_fit="contain", preview=False, interactive=False, show_label=False,
                                         buttons=PICTURE_BUTTONS, format="png")
                    compare_curves = _picture(gr, "curves", "compare-curves")

        # The handlers get every input as {component: value}, named back here (a model's extra inputs need no
        # change below), and unprocessed: our own code reads the image and checks every choice.
        fields = {"image": image, "method": method, "curve": curve, "label": label, "reward": reward, "grid": grid,
                  **extra}
        names = {component: name for name, component in fields.items()}
        buttons = [run, compare_button]
        explain_outputs = [needed, heatmap, curve_plot, interactions, download]
        compare_outputs = [compare_status, gallery, compare_curves]

        def named(given: dict) -> dict:
            values = {names[component]: value for component, value in given.items()}
            return {"extra": {name: values.pop(name) for name in extra}, **values}

        # Gradio finds the request and the progress bar by these parameters.
        def explain(given: dict, request: gr.Request, progress=gr.Progress()):  # noqa: B008
            v = named(given)
            return handlers.explain(v["image"], v["method"], v["curve"], v["label"], v["reward"], v["grid"], request,
                                    progress, **v["extra"])

        def compare(given: dict, request: gr.Request, progress=gr.Progress()):  # noqa: B008
            v = named(given)
            return handlers.compare(v["image"], v["curve"], v["label"], v["reward"], v["grid"], request, progress,
                                    **v["extra"])

        def start_explain():
            locked = [gr.update(interactive=False)] * len(buttons)
            return *locked, gr.Tabs(selected="explanation"), "", None, None, gr.update(value=None, visible=False), None

        def start_compare():
            locked = [gr.update(interactive=False)] * len(buttons)
            return *locked, gr.Tabs(selected="compare"), "", None, None

        def finish():
            return [gr.update(interactive=True)] * len(buttons)

        def cancel(request: gr.Request):  # the running handler stops at its next chunk and says so itself
            handlers.cancel(request)

        at_once = {"queue": False, "show_progress": "hidden"}
        explaining = run.click(start_explain, None, [*buttons, tabs, *explain_outputs], **at_once).then(
            explain, set(fields.values()), explain_outputs, show_progress_on=[needed], preprocess=False)
        comparing = compare_button.click(start_compare, None, [*buttons, tabs, *compare_outputs], **at_once).then(
            compare, set(fields.values()), compare_outputs, show_progress_on=[compare_status], preprocess=False)
        for running in (explaining, comparing):  # the buttons come back however the run ended
            running.success(finish, None, buttons, **at_once)
            running.failure(finish, None, buttons, **at_once)
        stop.click(cancel, None, None, queue=False)
        if "candidate_labels" in extra:  # the label choices follow the labels as they are typed
            extra["candidate_labels"].input(lambda text, value: label_dropdown(gr, candidate_labels_from_text(text),
                                                                               value),
                                            [extra["candidate_labels"], label], [label], **at_once)
    return demo


def launch_demo(demo, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs):
    """Serve the page (blocks until stopped); ``share`` opens a public link through Gradio's servers."""
    gr = import_gradio()
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],  # no web fonts: works offline
                           font_mono=["ui-monospace", "monospace"])
    demo.queue(default_concurrency_limit=4)
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE,
                       show_error=True, footer_links=[], ssr_mode=False, theme=theme, css=_CSS, **kwargs)
