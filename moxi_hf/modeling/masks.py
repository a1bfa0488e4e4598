"""``embedding_mask``: which patch tokens to keep, validated once, and the gather that keeps them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["EmbeddingMask", "embedding_mask_to_indices", "select_batch_removing", "mean_or_zeros"]

EmbeddingMask = torch.Tensor | Sequence[Sequence[int]] | Sequence[Sequence[bool]]


def _as_tensor(embedding_mask: Sequence) -> torch.Tensor:
    """A list of per-image rows as a tensor; refuses 1-D lists, ragged rows and non-integer numbers."""
    rows = list(embedding_mask)
    if any(not isinstance(row, (Sequence, torch.Tensor)) or isinstance(row, str) for row in rows):
        raise ValueError(
            "embedding_mask must be 2-D: one list of kept patch indices (or booleans) per image; "
            "for a single image write [[...]], not [...]"
        )
    lengths = {len(row) for row in rows}
    if len(lengths) > 1:
        raise ValueError(f"embedding_mask rows must all keep the same number of patches, got lengths {sorted(lengths)}")
    if lengths in ({0}, set()):  # [[], [], ...] -> shape (B, 0)
        return torch.zeros(len(rows), 0, dtype=torch.long)
    try:
        mask = torch.tensor([[value.item() if torch.is_tensor(value) else value for value in row] for row in rows])
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"embedding_mask must hold integer patch indices or booleans: {error}") from None
    return mask


def embedding_mask_to_indices(
    embedding_mask: EmbeddingMask, batch_size: int, num_patches: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Validate an ``embedding_mask`` and return the kept patch indices as a LongTensor (B, K).

    ``embedding_mask`` lists the patches to KEEP, as a LongTensor (B, K), a list of B equal-length
    index lists, or a keep-mask (BoolTensor (B, N) or B lists of N booleans) with the same number
    of True per row. A 1-D mask is refused even for one image (write ``[[...]]``). Raises
    ``ValueError`` naming the problem for anything else (floats, ragged rows, repeats, out of range).
    """
    mask = embedding_mask if isinstance(embedding_mask, torch.Tensor) else _as_tensor(embedding_mask)
    if mask.ndim != 2:
        raise ValueError(
            f"embedding_mask must be 2-D (batch, patches), got shape {tuple(mask.shape)}"
            + ("; for a single image write [[...]]" if mask.ndim == 1 else "")
        )
    if mask.shape[0] != batch_size:
        raise ValueError(f"embedding_mask has {mask.shape[0]} rows but the batch has {batch_size} images")
    if mask.dtype == torch.bool:
        if mask.shape[1] != num_patches:
            raise ValueError(
                f"a boolean embedding_mask must have one column per patch ({num_patches}), got {mask.shape[1]}"
            )
        counts = mask.sum(dim=1)
        if batch_size and bool((counts != counts[0]).any()):
            raise ValueError(
                "a boolean embedding_mask must keep the same number of patches in every row, "
                f"got counts {counts.tolist()}"
            )
        keep = int(counts[0]) if batch_size else 0
        # nonzero() is row-major, so each row's kept indices come out ascending.
        return mask.nonzero()[:, 1].reshape(batch_size, keep).to(device)
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise ValueError(f"embedding_mask must hold integer indices or booleans, got dtype {mask.dtype}")
    mask = mask.long()
    if mask.numel():
        low, high = int(mask.min()), int(mask.max())
        if low < 0 or high >= num_patches:
            bad = low if low < 0 else high
            raise ValueError(f"embedding_mask index {bad} is out of range for {num_patches} patches")
        if mask.shape[1] > 1:
            ordered = mask.sort(dim=1).values
            duplicated = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)
            if bool(duplicated.any()):
                row = int(duplicated.nonzero()[0, 0])
                raise ValueError(f"embedding_mask row {row} keeps a patch twice: {mask[row].tolist()}")
    return mask.to(device)


def select_batch_removing(embeddings: torch.Tensor, embedding_mask: EmbeddingMask) -> torch.Tensor:
    """Keep only some patch tokens of each row: (B, N, D) -> (B, K, D), one gather, no Python loop.

    ``embedding_mask`` gives the patches to keep (see :func:`embedding_mask_to_indices`).
    """
    batch_size, num_patches, hidden = embeddings.shape
    indices = embedding_mask_to_indices(embedding_mask, batch_size, num_patches, embeddings.device)
    return embeddings.gather(1, indices.unsqueeze(-1).expand(-1, -1, hidden))


def mean_or_zeros(tokens: torch.Tensor) -> torch.Tensor:
    """Mean over the token axis (B, K, D) -> (B, D); the mean of no token is the zero vector.

    This defines the pooled feature of the empty coalition for heads that average patch tokens
    (a masked mean with count 0 gives 0 instead of NaN).
    """
    if tokens.shape[1] == 0:
        return tokens.new_zeros(tokens.shape[0], tokens.shape[2])
    return tokens.mean(dim=1)
