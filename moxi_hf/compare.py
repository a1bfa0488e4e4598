"""Several methods on the same images: heatmaps, both curves per method, and MoXI's interactions.

:func:`compare_methods` is what ``moxi compare`` and the web demo run; :func:`comparison_to_dict`
is the JSON of one image's result (``compare.json``); :func:`moxi_hf.plotting.plot_comparison`
draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import MoXIError
from .options import CURVES, DEFAULT_INTERACTION_TOP, METHOD_NAMES, check_curve

__all__ = ["INTERACTIONS_METHOD", "compare_methods", "comparison_to_dict", "curve_record"]

#: the method whose interactions a comparison adds
INTERACTIONS_METHOD = "moxi"


def curve_record(explanation) -> dict:
    """One method's curve in a comparison: order, p(label) and prediction per k, patches needed, AUC."""
    from .metrics import auc

    return {
        "order": list(explanation.order),
        "probabilities": list(explanation.curve_probabilities),
        "predictions": list(explanation.curve_predictions),
        "patches_needed": explanation.patches_needed,
        "auc": float(auc(explanation.curve_probabilities)),
    }


def compare_methods(
    explainer,
    images: Sequence,
    methods: Sequence[str] | None = None,
    curve: str = "insertion",
    labels: Sequence[int | None] | None = None,
    method_options: Mapping[str, dict] | None = None,
    *,
    interactions: bool = True,
    interaction_top: int = DEFAULT_INTERACTION_TOP,
    on_chunk=None,
    progress: bool = False,
) -> list[dict]:
    """Run ``methods`` on ``images`` (paths, PIL images or arrays) with both curves; one result per image.

    ``methods``: default, every method that applies to the model (the others are listed under
    ``skipped`` with the reason); a method given by name that does not apply is refused.
    ``curve``: the curve whose orders the heatmaps show. ``labels``: target class per image (None:
    the prediction). ``method_options``: method name -> its options. ``interactions``: MoXI's
    explanation also gets ``gains`` and ``interactions`` (the first ``interaction_top`` players).
    ``on_chunk``: the progress/cancel callback of :meth:`moxi_hf.Explainer.explain_methods`.

    Each result: ``label``, ``label_name``, ``predicted``, ``predicted_name``, ``grid``,
    ``patch_grid``, ``curve``, ``model``, ``methods`` (name -> {``heatmap``: the Explanation for
    ``curve``, ``insertion``/``deletion``: :func:`curve_record`}), ``skipped`` (name -> reason),
    ``pil_image`` and ``display_image`` (the model's view).
    """
    check_curve(curve)
    if methods is None:
        skipped = {name: reason for name in METHOD_NAMES if (reason := explainer.unsupported_reason(name))}
        methods = [name for name in METHOD_NAMES if name not in skipped]
        if not methods:
            raise MoXIError("none of the methods applies to this model: "
                            + "; ".join(f"{name}: {reason}" for name, reason in skipped.items()))
    else:
        methods, skipped = list(dict.fromkeys(methods)), {}
    curves = [curve, *(other for other in CURVES if other != curve)]
    batch = explainer.explain_methods(
        list(images), methods, curves, labels, options=method_options,
        interactions={INTERACTIONS_METHOD} if interactions else False, interaction_top=interaction_top,
        on_chunk=on_chunk, progress=progress)
    results = []
    for index, target in enumerate(batch.labels):
        explained = batch.image(index)
        heatmaps = {name: explained[(name, curve)] for name in batch.methods}
        first = heatmaps[batch.methods[0]]
        results.append({
            "label": target,
            "label_name": first.label_name,
            "predicted": first.predicted,
            "predicted_name": first.predicted_name,
            "grid": list(explainer.players.grid),
            "patch_grid": list(explainer.players.patch_grid),
            "curve": curve,
            "model": explainer.name,
            "methods": {name: {"heatmap": heatmaps[name],
                               **{other: curve_record(explained[(name, other)]) for other in CURVES}}
                        for name in batch.methods},
            "skipped": skipped,
            "pil_image": first.pil_image,
            "display_image": first.display_image,
        })
    return results


def comparison_to_dict(result: dict, image: str | None = None) -> dict:
    """The JSON-able part of a :func:`compare_methods` result (each heatmap Explanation as a dict)."""
    from .artifacts import public_name

    out = {key: value for key, value in result.items() if key not in ("methods", "pil_image", "display_image")}
    out["model"] = public_name(out.get("model"))
    out["image"] = image
    out["methods"] = {
        name: {"explanation": record["heatmap"].to_dict(), "insertion": record["insertion"],
               "deletion": record["deletion"]}
        for name, record in result["methods"].items()
    }
    return out
