"""Figures, each built on ``matplotlib.figure.Figure`` (no pyplot state, no backend switch)."""
