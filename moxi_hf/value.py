"""The value function v(S): the one thing every game-theoretic method calls.

A :class:`ValueFunction` is bound to one or several images and a target label per image. Called
on a batch of coalitions of players (C, P) bool, with the image each coalition belongs to, it
returns v(S) (C,) for the chosen reward. Patch embeddings (token removal) are computed once per
image, at construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from .errors import MoXIError
from .options import DEFAULT_REWARD, REWARD_NAMES
from .players import Players
from .removal import RemovalAdapter

__all__ = ["ChunkCallback", "DECISIONS", "DEFAULT_MAX_TOKENS", "LINKS", "REWARDS", "ValueFunction", "ValueOutput",
           "check_label", "default_memory_mb", "label_probabilities", "predicted_classes", "probabilities",
           "reward_from_logits"]

#: Called before each forward chunk with (coalitions in the chunk, token-forwards in the chunk = coalitions ×
#: ``adapter.cost(kept)``); whatever it raises (a cancellation) leaves the explain call unchanged.
ChunkCallback = Callable[[int, int], None]

REWARDS = REWARD_NAMES
#: How a model's logits become probabilities: "softmax" over the classes (single-label classifiers, CLIP's
#: candidates) or an independent "sigmoid" per class (multi-label and one-logit classifiers, SigLIP).
LINKS = ("softmax", "sigmoid")
#: When a coalition counts as predicting the label: "argmax" (the label is the top class) or "threshold"
#: (sigmoid only: p(label) > 0.5, as for multi-label classifiers).
DECISIONS = ("argmax", "threshold")

#: Default bound on tokens (token removal) per forward pass; memory grows linearly with it.
DEFAULT_MAX_TOKENS = 32768

#: Working memory (MB) of one forward pass by device type. Small on CPU: chunks whose activations
#: stay in the caches run faster than large ones (about 2,400 tokens of a ViT-Tiny in fp32).
DEFAULT_MEMORY_MB = {"cpu": 32.0, "cuda": 4096.0}


def default_memory_mb(device: torch.device | str) -> float:
    """The default working-memory budget (MB) of one forward pass on ``device``."""
    return DEFAULT_MEMORY_MB.get(torch.device(device).type, 1024.0)


def check_reward(reward: str) -> str:
    if reward not in REWARDS:
        raise MoXIError(f"unknown reward {reward!r}; choose one of {', '.join(REWARDS)}")
    return reward


def check_label(label: object, num_labels: int) -> int:
    """``label`` as a class index of a model with ``num_labels`` classes, or a MoXIError naming the problem."""
    if isinstance(label, bool) or not hasattr(label, "__index__"):
        raise MoXIError(f"label must be an integer class index, got {label!r}")
    index = int(label)
    if not 0 <= index < num_labels:
        raise MoXIError(f"label {index} is out of range: the model has {num_labels} classes (0..{num_labels - 1})")
    return index


def _check_link(link: str) -> str:
    if link not in LINKS:
        raise MoXIError(f"unknown link {link!r}; choose one of {', '.join(LINKS)}")
    return link


def reward_from_logits(logits: torch.Tensor, labels: torch.Tensor, reward: str = DEFAULT_REWARD,
                       link: str = "softmax") -> torch.Tensor:
    """v from logits (C, L) float and target labels (C,): log-odds, log-prob or logit of the label.

    Under a softmax, log-odds is z_y − logsumexp of the other classes (= log p/(1 − p)) and log-prob
    log softmax(z)_y. Under a sigmoid each class is its own yes/no: log-odds is the label's own logit
    z_y (no contrast with the other classes) and log-prob log σ(z_y).
    """
    check_reward(reward)
    target = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    if reward == "logit":
        return target
    if _check_link(link) == "sigmoid":
        return target if reward == "log-odds" else torch.nn.functional.logsigmoid(target)
    if reward == "log-prob":
        return target - torch.logsumexp(logits, dim=1)
    others = logits.scatter(1, labels.unsqueeze(1), float("-inf"))
    return target - torch.logsumexp(others, dim=1)


def probabilities(logits: torch.Tensor, link: str = "softmax") -> torch.Tensor:
    """Probabilities (C, L) of every class from logits (C, L): softmax over the classes, or a sigmoid each."""
    return torch.sigmoid(logits) if _check_link(link) == "sigmoid" else torch.softmax(logits, dim=-1)


def label_probabilities(logits: torch.Tensor, labels: torch.Tensor, link: str = "softmax") -> torch.Tensor:
    """p(label) (C,) from logits (C, L) and labels (C,)."""
    if _check_link(link) == "sigmoid":
        return torch.sigmoid(logits.gather(1, labels.unsqueeze(1)).squeeze(1))
    return torch.softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)


def predicted_classes(logits: torch.Tensor, labels: torch.Tensor, link: str = "softmax",
                      decision: str = "argmax") -> torch.Tensor:
    """The predicted class (C,) long of each row, as compared with its label (C,) by the curves.

    ``"argmax"``: the top class. ``"threshold"`` (sigmoid): the label while p(label) > 0.5, else -1
    ("not the label"; a multi-label model predicts each class on its own).
    """
    if decision not in DECISIONS:
        raise MoXIError(f"unknown decision {decision!r}; choose one of {', '.join(DECISIONS)}")
    if decision == "argmax":
        return logits.argmax(dim=1)
    if _check_link(link) != "sigmoid":
        raise MoXIError("the threshold decision needs the sigmoid link")
    above = logits.gather(1, labels.unsqueeze(1)).squeeze(1) > 0  # σ(z) > 0.5 exactly when z > 0
    return torch.where(above, labels, torch.full_like(labels, -1))


def _even_chunk(count: int, chunk: int) -> int:
    """The chunk size that splits ``count`` rows into as few, equal chunks of at most ``chunk``: 130 by 128 -> 65."""
    pieces = -(-count // chunk)
    return -(-count // pieces)


class ValueOutput(NamedTuple):
    values: torch.Tensor  # (C,) float32, v(S)
    predictions: torch.Tensor  # (C,) long, the predicted class with only S present (see predicted_classes)
    probabilities: torch.Tensor  # (C,) float32, p(label) under the adapter's link (softmax or sigmoid)


class ValueFunction:
    """v(S) over coalitions of players for one or several images.

    Args:
        adapter: how patches are removed (token removal or pixel masking).
        pixel_values: processed images (B, C, H, W).
        labels: target class per image (B,).
        players: the player grid; defaults to one player per patch.
        reward: ``"log-odds"`` (default), ``"log-prob"`` or ``"logit"``, read under the adapter's
            ``link`` (softmax or sigmoid, :func:`reward_from_logits`); ``adapter.decision`` says when a
            coalition predicts the label (:func:`predicted_classes`).
        max_batch_size: at most this many coalitions per forward pass.
        max_tokens: at most this many tokens per forward pass (token removal).
        memory_mb: working memory of one forward pass (MB), turned into a token bound with the
            adapter's bytes per token; default :func:`default_memory_mb` of the model's device.
            The smaller of this bound and ``max_tokens`` sets the chunk size.
        on_chunk: a :data:`ChunkCallback`, called before each forward chunk (progress; raise to cancel).
    """

    def __init__(
        self,
        adapter: RemovalAdapter,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | list[int],
        players: Players | None = None,
        reward: str = DEFAULT_REWARD,
        max_batch_size: int = 1024,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        memory_mb: float | None = None,
        on_chunk: ChunkCallback | None = None,
    ):
        self.adapter = adapter
        self.players = players or Players.build(adapter.grid)
        if self.players.patch_grid != tuple(adapter.grid):
            raise MoXIError(f"players are over a {self.players.patch_grid} grid but the model has {adapter.grid}")
        self.reward = check_reward(reward)
        if pixel_values.ndim != 4:
            raise MoXIError(f"pixel_values must be (batch, channels, height, width), got {tuple(pixel_values.shape)}")
        self.pixel_values = pixel_values
        self.labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if self.labels.numel() != pixel_values.shape[0]:
            raise MoXIError(f"got {self.labels.numel()} labels for {pixel_values.shape[0]} images")
        for label in self.labels.tolist():
            check_label(label, adapter.num_labels)
        if max_batch_size < 1 or max_tokens < 1:
            raise MoXIError("max_batch_size and max_tokens must be positive")
        if memory_mb is not None and not memory_mb > 0:
            raise MoXIError(f"memory_mb must be positive, got {memory_mb}")
        self.max_batch_size = max_batch_size
        self.max_tokens = max_tokens
        self.memory_mb = float(memory_mb) if memory_mb is not None else default_memory_mb(adapter.device)
        per_unit = adapter.bytes_per_cost()
        budget = int(self.memory_mb * 2**20 // per_unit) if per_unit else max_tokens
        #: Cost units (tokens for token removal) per forward pass: min(max_tokens, memory budget).
        self.chunk_cost = max(1, min(max_tokens, budget))
        self.on_chunk = on_chunk
        self.prepared = adapter.prepare(pixel_values)
        self.calls = 0  # coalitions evaluated so far (forward passes of one sequence)
        #: cost units sent through the model so far (RemovalAdapter.cost summed over the coalitions):
        #: token-forwards for token removal (kept patches + special tokens), one per coalition for pixel masking
        self.tokens = 0

    @property
    def n_players(self) -> int:
        return self.players.n_players

    @property
    def n_images(self) -> int:
        return int(self.labels.numel())

    def _image_index(self, coalitions: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:
        if image_index is None:
            if self.n_images != 1:
                raise MoXIError("image_index is required when the value function holds several images")
            return torch.zeros(coalitions.shape[0], dtype=torch.long)
        return torch.as_tensor(image_index, dtype=torch.long).reshape(-1)

    def logits(self, coalitions: torch.Tensor, image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (C, num_labels), float32, with only the players of each coalition present."""
        coalitions = torch.as_tensor(coalitions, dtype=torch.bool)
        if coalitions.ndim != 2 or coalitions.shape[1] != self.n_players:
            raise MoXIError(f"coalitions must be (count, {self.n_players}) booleans, got {tuple(coalitions.shape)}")
        image_index = self._image_index(coalitions, image_index)
        keep = self.players.to_patches(coalitions.cpu())
        image_index = image_index.cpu()
        out = torch.empty(coalitions.shape[0], self.adapter.num_labels, dtype=torch.float32)
        self.calls += coalitions.shape[0]
        if self.adapter.needs_equal_counts:
            counts = keep.sum(dim=1)
            groups = [(int(c), (counts == c).nonzero().squeeze(1)) for c in counts.unique().tolist()]
        else:
            groups = [(self.players.n_patches, torch.arange(coalitions.shape[0]))]
        for kept, rows in groups:
            cost = self.adapter.cost(kept)
            self.tokens += rows.numel() * cost
            chunk = _even_chunk(rows.numel(), max(1, min(self.max_batch_size, self.chunk_cost // cost)))
            for start in range(0, rows.numel(), chunk):
                part = rows[start : start + chunk]
                if self.on_chunk is not None:
                    self.on_chunk(part.numel(), part.numel() * cost)
                out[part] = self.adapter.logits(self.prepared, image_index[part], keep[part]).cpu()
        return out

    def evaluate(self, coalitions: torch.Tensor, image_index: torch.Tensor | None = None) -> ValueOutput:
        """v(S), the predicted class and p(label) for each coalition."""
        image_index = self._image_index(torch.as_tensor(coalitions), image_index)
        logits = self.logits(coalitions, image_index)
        labels = self.labels[image_index]
        link = self.adapter.link
        return ValueOutput(reward_from_logits(logits, labels, self.reward, link),
                           predicted_classes(logits, labels, link, self.adapter.decision),
                           label_probabilities(logits, labels, link))

    def __call__(self, coalitions: torch.Tensor, image_index: torch.Tensor | None = None) -> torch.Tensor:
        """v(S) (C,) float32 for coalitions (C, P) bool of the images ``image_index`` (C,)."""
        return self.evaluate(coalitions, image_index).values
