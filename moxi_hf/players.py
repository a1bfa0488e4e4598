"""Players: who takes part in the game. One player per patch, or g×g groups of patches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import MoXIError

__all__ = ["Players", "as_pair"]


def as_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``7`` -> ``(7, 7)``; a (rows, cols) pair -> a tuple of ints."""
    if isinstance(value, int):
        return (value, value)
    rows, cols = value
    return (int(rows), int(cols))


@dataclass(frozen=True)
class Players:
    """A grid of players over a grid of patches, both row-major.

    ``patch_grid`` is the model's patch grid (e.g. (14, 14) for ViT-B/16 at 224 px); ``grid`` the
    player grid, which must divide it (e.g. (7, 7): each player is a 2×2 block of patches).
    """

    patch_grid: tuple[int, int]
    grid: tuple[int, int]

    @classmethod
    def build(cls, patch_grid: int | tuple[int, int], grid: int | tuple[int, int] | None = None) -> Players:
        patch_grid = as_pair(patch_grid)
        grid = patch_grid if grid is None else as_pair(grid)
        if min(grid) < 1:
            raise MoXIError(f"the players grid must be positive, got {grid[0]}x{grid[1]}")
        if patch_grid[0] % grid[0] or patch_grid[1] % grid[1]:
            raise MoXIError(
                f"a {grid[0]}x{grid[1]} players grid does not divide the model's "
                f"{patch_grid[0]}x{patch_grid[1]} patch grid; choose a divisor of it"
            )
        return cls(patch_grid, grid)

    @property
    def n_players(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def n_patches(self) -> int:
        return self.patch_grid[0] * self.patch_grid[1]

    @property
    def group(self) -> tuple[int, int]:
        """Patches per player along rows and columns."""
        return (self.patch_grid[0] // self.grid[0], self.patch_grid[1] // self.grid[1])

    @property
    def patches_per_player(self) -> int:
        return self.group[0] * self.group[1]

    def to_patches(self, coalitions: torch.Tensor) -> torch.Tensor:
        """Coalitions of players (C, P) bool -> the patches they cover (C, N) bool."""
        if self.group == (1, 1):
            return coalitions
        count = coalitions.shape[0]
        cells = coalitions.reshape(count, *self.grid)
        cells = cells.repeat_interleave(self.group[0], dim=1).repeat_interleave(self.group[1], dim=2)
        return cells.reshape(count, self.n_patches)

    def from_patch_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-patch scores (..., N) -> per-player scores (..., P), summed over each player's patches."""
        if self.group == (1, 1):
            return scores
        lead = scores.shape[:-1]
        blocks = scores.reshape(*lead, self.grid[0], self.group[0], self.grid[1], self.group[1])
        return blocks.sum(dim=(-3, -1)).reshape(*lead, self.n_players)
