"""How a class is written for people: the one label text of titles, summaries, the web page and figures."""

from __future__ import annotations

__all__ = ["label_text"]


def label_text(index: int | None, name: str | None = None) -> str:
    """``7`` when the class name is its index (or unknown), else ``281 ("tabby cat")``; ``?`` for no class.

    Names come from :meth:`moxi_hf.Explainer.label_name` (the model's ``id2label``).
    """
    if index is None:
        return "?"
    return str(index) if name is None or str(name) == str(index) else f'{index} ("{name}")'
