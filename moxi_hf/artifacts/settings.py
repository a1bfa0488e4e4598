"""The run-settings dict recorded in ``config.json`` (explain, compare and evaluate build it here)."""

from __future__ import annotations

from collections.abc import Sequence

from .schema import SCHEMA_VERSION, public_name

__all__ = ["candidate_settings", "explainer_settings", "method_settings", "run_settings"]


def candidate_settings(source) -> dict:
    """A zero-shot run's ``candidate_labels`` and ``hypothesis_template`` (the one place config.json gets them),
    from an :class:`moxi_hf.Explainer` or :class:`moxi_hf.Explanation`; ``{}`` for a classifier."""
    labels = getattr(source, "candidate_labels", None)
    if labels is None:
        return {}
    return {"candidate_labels": list(labels), "hypothesis_template": source.hypothesis_template}


def explainer_settings(explainer) -> dict:
    """What an :class:`moxi_hf.Explainer` contributes: masking, reward, players grid, dtype, device (and a
    zero-shot model's candidate labels and template)."""
    parameter = next(explainer.model.parameters())
    return {
        "masking": explainer.adapter.masking,
        "reward": explainer.reward,
        "players_grid": list(explainer.players.grid),
        "dtype": str(parameter.dtype).replace("torch.", ""),
        "device": parameter.device.type,
        **candidate_settings(explainer),
    }


def method_settings(explanations) -> dict:
    """method -> the choices it made on its own (``Explanation.settings``, e.g. Grad-CAM's ``cam_layer``)."""
    chosen: dict = {}
    for explanation in explanations:
        if explanation.settings:
            chosen.setdefault(explanation.method, {}).update(explanation.settings)
    return chosen


def run_settings(*, kind: str, model: str | None, methods: Sequence[str], curves: Sequence[str],
                 method_options: dict | None = None, explainer=None, chosen: dict | None = None,
                 **extra) -> dict:
    """``{"schema_version", "kind", "model", "methods", "curves", "method_options", "method_settings",
    <explainer>, **extra}``.

    ``model`` is written by :func:`public_name` (a local folder by its name). ``method_options``:
    method -> its non-default options (empty ones are left out). ``chosen``: method -> what it chose
    itself (:func:`method_settings`), recorded as ``method_settings`` when there is any.
    """
    settings = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "model": public_name(model),
        "methods": list(methods),
        "curves": list(curves),
    }
    if method_options is not None:
        settings["method_options"] = {name: dict(options) for name, options in method_options.items() if options}
    if chosen:
        settings["method_settings"] = {name: dict(values) for name, values in chosen.items()}
    if explainer is not None:
        settings.update(explainer_settings(explainer))
    settings.update(extra)
    return settings
