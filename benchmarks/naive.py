"""Slow reference implementations outside the package: the ORIGINAL evaluation pattern of MoXI
(benchmark and tests) and a plain greedy (tests).

This module is deliberately slow. It reproduces how the research code spends its time, not its
source: per image, at every greedy step,

- all N candidates are evaluated, including the ones already chosen (their values are then
  discarded): insertion builds ``S + [i]`` for every i (a chosen i appears twice), deletion
  ``R ∖ {i}`` for every i (a chosen i leaves R unchanged, one token longer than the others);
- every coalition goes through the full model forward from ``pixel_values``: the patch
  projection is re-run for every row of the batch;
- tokens are removed with a Python loop over rows;
- attention is the eager implementation (matmul, softmax, matmul).

The orders are the same as the fast engine's (:class:`moxi_hf.methods.MoXI`) up to floating
point: same values for the same sets, ties to the lowest index. The fast path is tested against
this one (``tests/test_speed_paths.py``) and benchmarked against it (``scripts/benchmark.py``).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from moxi_hf.errors import MoXIError
from moxi_hf.modeling import TokenRemovalClassifier, TokenRemovalImageText
from moxi_hf.value import check_reward, reward_from_logits

__all__ = ["NaiveResult", "NaiveMoXI", "brute_force_greedy"]


@dataclass
class NaiveResult:
    """Orders (B, N) long (most important first), the value after each step (B, N) for MoXI or
    each patch's own value (B, N) for self-Shapley, and ``sequences``: how many sequences of each
    token length (special tokens included) were run, for FLOP counting."""

    order: torch.Tensor
    values: torch.Tensor
    sequences: Counter = field(default_factory=Counter)


class NaiveMoXI:
    """The original pattern for MoXI (greedy) and self-context Shapley on a token-removal model.

    Args:
        model: a MoXI ViT-family classifier (token removal), or a MoXI CLIP/SigLIP model with
            ``text_features``. A private copy with eager attention is made; the model passed in is not changed.
        text_features: (K, projection) unit text features of the candidate labels of an image-text model
            (computed once by the caller); its logits are then the candidate logits
            ``logit_scale.exp() · cos(image, text) (+ logit_bias)``.
        reward: ``"log-odds"`` (default), ``"log-prob"`` or ``"logit"``.
        batch_size: rows per forward pass (default: all N candidates of a step at once).
        progress: show a progress bar over images × steps.
    """

    def __init__(self, model: torch.nn.Module, reward: str = "log-odds", batch_size: int | None = None,
                 progress: bool = False, text_features: torch.Tensor | None = None):
        image_text = isinstance(model, TokenRemovalImageText)
        if not (isinstance(model, TokenRemovalClassifier) or image_text and text_features is not None):
            raise MoXIError(f"the naive baseline needs a MoXI ViT-family classifier (or an image-text model and "
                            f"its text features), got {type(model).__name__}")
        self.text_features = text_features
        self.link = model.link if image_text else "softmax"
        self.reward = check_reward(reward)
        self.model = copy.deepcopy(model).eval()
        self.model.set_attn_implementation("eager")
        self.num_special_tokens = self.model.backbone.num_special_tokens
        self.batch_size = batch_size
        self.progress = progress

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _forward(self, pixel_values: torch.Tensor, rows: list[list[int]]) -> torch.Tensor:
        """Logits (C, L) float32 for one image (1, C, H, W) and C equal-length lists of kept patches."""
        count = len(rows)
        special = self.num_special_tokens
        with torch.no_grad():
            # The patch projection runs again for every coalition, as in the original.
            full = self.model.backbone.embed(pixel_values.expand(count, -1, -1, -1))
            sequences, indices = [], []
            for row in range(count):  # removal: a Python loop over rows
                index = torch.tensor(list(range(special)) + [special + i for i in rows[row]], dtype=torch.long)
                sequences.append(full[row, index])
                indices.append(index)
            embedded, token_index = torch.stack(sequences), torch.stack(indices)
            resolution = tuple(pixel_values.shape[-2:])
            if self.text_features is None:
                return self.model.classify_embeddings(embedded, token_index=token_index, resolution=resolution).float()
            image = self.model.image_features_from_embeddings(embedded, token_index=token_index, resolution=resolution)
            image = image.float() / image.float().norm(dim=-1, keepdim=True)
            logits = image @ self.text_features.T * self.model.logit_scale.float().exp()
            bias = getattr(self.model, "logit_bias", None)
            return logits if bias is None else logits + bias.float()

    def _values(self, pixel_values: torch.Tensor, label: int, rows: list[list[int]], seen: Counter) -> torch.Tensor:
        """v for each row (C,); rows of different lengths go through separate forward passes."""
        values = torch.empty(len(rows))
        by_length: dict[int, list[int]] = {}
        for index, row in enumerate(rows):
            by_length.setdefault(len(row), []).append(index)
        for length, members in by_length.items():
            size = self.batch_size or len(members)
            for start in range(0, len(members), size):
                part = members[start : start + size]
                logits = self._forward(pixel_values, [rows[i] for i in part])
                labels = torch.full((len(part),), label, dtype=torch.long)
                values[part] = reward_from_logits(logits, labels, self.reward, self.link)
                seen[length + self.num_special_tokens] += len(part)
        return values

    def _start(self, pixel_values: torch.Tensor, labels, curve: str
               ) -> tuple[bool, torch.Tensor, list[int], int, torch.Tensor, Counter]:
        """Checked inputs of one run: (insertion?, pixel_values, labels, N patches, empty orders (B, N), counter)."""
        if curve not in ("insertion", "deletion"):
            raise MoXIError(f"unknown curve {curve!r}; choose insertion or deletion")
        if pixel_values.ndim != 4:
            raise MoXIError(f"pixel_values must be (batch, channels, height, width), got {tuple(pixel_values.shape)}")
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1).tolist()
        if len(labels) != pixel_values.shape[0]:
            raise MoXIError(f"got {len(labels)} labels for {pixel_values.shape[0]} images")
        patch = self.model.backbone.config.patch_size
        patch_h, patch_w = (patch, patch) if isinstance(patch, int) else tuple(patch)
        n = (pixel_values.shape[-2] // patch_h) * (pixel_values.shape[-1] // patch_w)
        orders = torch.empty(len(labels), n, dtype=torch.long)
        return curve == "insertion", pixel_values.to(self.dtype), labels, n, orders, Counter()

    def moxi(self, pixel_values: torch.Tensor, labels, curve: str = "insertion", steps: int | None = None
             ) -> NaiveResult:
        """Greedy MoXI orders (B, N), one image at a time, all N candidates at every step.

        ``steps``: stop after this many greedy steps (orders and step values are then (B, steps)).
        """
        insertion, pixel_values, labels, n, orders, seen = self._start(pixel_values, labels, curve)
        steps = n if steps is None else min(steps, n)
        orders = orders[:, :steps]
        step_values = torch.empty(len(labels), steps)
        bar = tqdm(total=len(labels) * steps, desc="naive moxi", disable=not self.progress, leave=False)
        for image, label in enumerate(labels):
            image_pixels = pixel_values[image : image + 1]
            chosen: list[int] = []
            for step in range(steps):
                rows = []
                taken = set(chosen)
                remaining = [p for p in range(n) if p not in taken]
                for candidate in range(n):
                    if insertion:  # S + [i]; a chosen i appears twice (its value is discarded)
                        rows.append(sorted(chosen + [candidate]))
                    else:  # R minus {i}; a chosen i is not in R, so the row is R itself
                        rows.append([p for p in remaining if p != candidate])
                values = self._values(image_pixels, label, rows, seen)
                values[chosen] = float("-inf") if insertion else float("inf")
                pick = int(values.argmax() if insertion else values.argmin())
                chosen.append(pick)
                orders[image, step] = pick
                step_values[image, step] = values[pick]
                bar.update(1)
        bar.close()
        return NaiveResult(orders, step_values, seen)

    def self_shapley(self, pixel_values: torch.Tensor, labels, curve: str = "insertion") -> NaiveResult:
        """Self-context Shapley orders (B, N): v({i}) descending (insertion), v(N ∖ {i}) ascending (deletion)."""
        insertion, pixel_values, labels, n, orders, seen = self._start(pixel_values, labels, curve)
        singles = torch.empty(len(labels), n)
        for image, label in enumerate(labels):
            image_pixels = pixel_values[image : image + 1]
            base = [] if insertion else list(range(n))
            rows = [base] + [[i] if insertion else [p for p in range(n) if p != i] for i in range(n)]
            values = self._values(image_pixels, label, rows, seen)
            singles[image] = values[1:]
            orders[image] = torch.sort(values[1:], descending=insertion, stable=True).indices
        return NaiveResult(orders, singles, seen)


def brute_force_greedy(game, curve: str) -> list[int]:
    """Greedy MoXI written plainly: every candidate evaluated on its own, one coalition per call.

    ``game`` maps a (1, n) bool keep-mask to values (1,); ties go to the lowest index."""
    n = game.n_players
    present = set() if curve == "insertion" else set(range(n))
    order = []
    for _ in range(n):
        best, best_value = None, None
        for player in range(n):
            if (player in present) == (curve == "insertion"):
                continue
            coalition = present | {player} if curve == "insertion" else present - {player}
            mask = torch.zeros(1, n, dtype=torch.bool)
            mask[0, list(coalition)] = True
            value = float(game(mask)[0])
            better = best_value is None or (value > best_value if curve == "insertion" else value < best_value)
            if better:
                best, best_value = player, value
        order.append(best)
        present = present | {best} if curve == "insertion" else present - {best}
    return order
