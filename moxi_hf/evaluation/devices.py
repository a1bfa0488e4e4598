"""Which device each process of an evaluation uses (Accelerate's process state)."""

from __future__ import annotations

import torch

__all__ = ["process_state", "resolve_device"]


def process_state(device: str | None):
    """This process's ``accelerate.PartialState`` (CPU only when asked or without CUDA)."""
    from accelerate import PartialState

    cpu = device == "cpu" or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def resolve_device(state, device: str | None) -> torch.device:
    """``device`` (None/``auto``: the process's own), one accelerator per process when several run."""
    if device in (None, "auto"):
        return state.device
    requested = torch.device(device)
    if requested.type == state.device.type and state.num_processes > 1:
        return state.device  # one accelerator per process
    return requested
