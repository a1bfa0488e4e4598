"""The evaluation's results as a plain-text table (what ``moxi evaluate`` prints)."""

from __future__ import annotations

__all__ = ["format_summary"]


def format_summary(curves: dict, settings: dict | None = None) -> str:
    """A plain-text AUC table: method, curve, accuracy AUC, confidence AUC, images; below it, for a zero-shot
    model, its accuracy on the images scanned to select them (``settings``: the run's config.json)."""
    shares = any("interaction_share" in entry for by_curve in curves.values() for entry in by_curve.values())
    lines = [f"{'method':<20}{'curve':<11}{'acc AUC':>9}{'p(y) AUC':>10}{'images':>8}"
             + (f"{'interaction share':>19}" if shares else "")]
    for method, by_curve in curves.items():
        for curve, entry in by_curve.items():
            share = entry.get("interaction_share")
            lines.append(f"{method:<20}{curve:<11}{entry['auc']:>9.3f}{entry['confidence_auc']:>10.3f}"
                         f"{entry['num_images']:>8}" + (f"{share:>19.3f}" if share is not None else ""))
    if shares:
        lines.append("interaction share: mean over the images of the share of the gain of the patches needed "
                     "that came from interaction (MoXI)")
    selection = (settings or {}).get("selection") or {}
    if "zero_shot_accuracy" in selection:
        labels = settings.get("candidate_labels") or []
        lines.append(f"zero-shot accuracy: {100 * selection['zero_shot_accuracy']:.1f} % ({selection['correct']} of "
                     f"the {selection['scanned']} images scanned, {len(labels)} candidate labels)")
    return "\n".join(lines)
