"""Several methods on the same images: heatmaps, both curves per method, and MoXI's interactions.

:func:`compare_methods` is what ``moxi compare`` and the web demo run; :func:`comparison_to_dict`
is the JSON of one image's result (``compare.json``); :func:`moxi_hf.plotting.plot_comparison`
draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import MoXIError
from .options import CURVES, DEFAULT_INTERACTION_TOP, METHOD_NAMES

__all__ = ["compare_methods", "comparison_to_dict"]

#: the method whose interactions a comparison adds
INTERACTIONS_METHOD = "moxi"


def _curve_record(order, probabilities, predictions, label: int, curve: str) -> dict:
    from .metrics import auc, patches_needed

    return {
        "order": order.tolist(),
        "probabilities": probabilities.tolist(),
        "predictions": predictions.tolist(),
        "patches_needed": patches_needed(predictions, label, curve, order.numel()),
        "auc": float(auc(probabilities)),
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
    skip_unsupported: bool | None = None,
    progress: bool = False,
) -> list[dict]:
    """Run ``methods`` (default: every method) on ``images`` (paths, PIL images or arrays); one result per image.

    ``curve``: the curve whose orders the heatmaps show; methods whose order depends on the curve
    (moxi, self-shapley) run once per curve, the others once, their order measured on both curves.
    ``labels``: target class per image (None: the prediction). ``method_options``: method name ->
    its options. ``interactions``: MoXI's explanation also gets ``gains`` and ``interactions`` (the
    first ``interaction_top`` players). ``skip_unsupported`` (default: True when ``methods`` is
    None): leave out, under ``skipped``, the methods that do not apply to the model instead of failing.

    Each result: ``label``, ``label_name``, ``predicted``, ``predicted_name``, ``grid``,
    ``patch_grid``, ``curve``, ``model``, ``methods`` (name -> {``heatmap``: the Explanation for
    ``curve``, ``insertion``/``deletion``: {order, probabilities, predictions, patches_needed, auc}}),
    ``skipped`` (name -> reason), ``pil_image`` and ``display_image`` (the model's view).
    """
    import torch

    from .methods import METHODS
    from .methods.base import check_curve
    from .metrics import measure_curves

    check_curve(curve)
    if skip_unsupported is None:
        skip_unsupported = methods is None
    methods = list(dict.fromkeys(methods or METHOD_NAMES))
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise MoXIError(f"unknown method(s) {', '.join(unknown)}; choose among {', '.join(METHOD_NAMES)}")
    options = dict(method_options or {})
    pixel_values, pil_images = explainer.preprocess(list(images))
    views = explainer.model_views(pil_images)
    predicted = explainer.predict(pixel_values)
    targets = explainer._check_labels(labels if labels is not None else [None] * len(predicted), predicted)
    per_method: dict[str, dict[str, list]] = {}
    skipped: dict[str, str] = {}
    game = None  # built (images embedded) once, for every order measured on the other curve
    for name in methods:
        runs = CURVES if METHODS[name].depends_on_curve else (curve,)
        extra = {"interactions": True, "interaction_top": interaction_top} if (
            interactions and name == INTERACTIONS_METHOD) else {}
        try:
            explained = {run: explainer.explain_batch(pixel_values, name, run, targets, progress=progress,
                                                      **(extra if run == curve else {}), **options.get(name, {}))
                         for run in runs}
        except MoXIError as error:
            if not skip_unsupported:
                raise MoXIError(f"{name}: {error}") from None
            skipped[name] = str(error)
            continue
        records: dict[str, list] = {"heatmap": explained[curve]}
        for other in CURVES:
            if other in explained:
                records[other] = [
                    _curve_record(torch.tensor(e.order), torch.tensor(e.curve_probabilities),
                                  torch.tensor(e.curve_predictions), e.label, other) for e in explained[other]]
            else:  # the same order, measured on the other curve
                if game is None:
                    game = explainer.value_function(pixel_values, targets)
                orders = torch.tensor([e.order for e in explained[curve]])
                measured = measure_curves(game, orders, other)
                records[other] = [
                    _curve_record(orders[i], measured.probabilities[i], measured.predictions[i], targets[i], other)
                    for i in range(len(targets))]
        per_method[name] = records
    if not per_method:
        raise MoXIError("none of the methods applies to this model: "
                        + "; ".join(f"{name}: {reason}" for name, reason in skipped.items()))
    results = []
    for index, target in enumerate(targets):
        methods_out = {}
        for name, records in per_method.items():
            heat = records["heatmap"][index]
            heat.pil_image, heat.display_image = pil_images[index], views[index]
            methods_out[name] = {"heatmap": heat, "insertion": records["insertion"][index],
                                 "deletion": records["deletion"][index]}
        results.append({
            "label": target,
            "label_name": explainer.label_name(target),
            "predicted": int(predicted[index]),
            "predicted_name": explainer.label_name(int(predicted[index])),
            "grid": list(explainer.players.grid),
            "patch_grid": list(explainer.players.patch_grid),
            "curve": curve,
            "model": explainer.name,
            "methods": methods_out,
            "skipped": skipped,
            "pil_image": pil_images[index],
            "display_image": views[index],
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
