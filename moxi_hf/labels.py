"""How a class is written for people: the one label text of titles, summaries, the web page and figures."""

from __future__ import annotations

__all__ = ["label_text", "template_value"]


def label_text(index: int | None, name: str | None = None) -> str:
    """``7`` when the class name is its index (or unknown), else ``281 ("tabby cat")``; ``?`` for no class.

    Names come from :meth:`moxi_hf.Explainer.label_name` (the model's ``id2label``).
    """
    if index is None:
        return "?"
    return str(index) if name is None or str(name) == str(index) else f'{index} ("{name}")'


def template_value(templates) -> str | list[str] | None:
    """A zero-shot model's prompt template(s) as recorded: one text, the list of a prompt ensemble, None for none."""
    templates = list(templates or ())
    if not templates:
        return None
    return templates[0] if len(templates) == 1 else templates
