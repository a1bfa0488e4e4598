"""Shared fixtures: tiny random checkpoints saved to temp dirs (no network)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    DeiTConfig,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

TINY = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=5)


def save_checkpoint(model: torch.nn.Module, path, image_size: int = 16) -> str:
    model.save_pretrained(path)
    ViTImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return str(path)


def tiny_vit(seed: int = 0, **overrides) -> ViTForImageClassification:
    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(**{**TINY, **overrides})).eval()


@pytest.fixture(scope="session")
def vit_dir(tmp_path_factory):
    return save_checkpoint(tiny_vit(), tmp_path_factory.mktemp("vit"))


@pytest.fixture(scope="session")
def deit_dir(tmp_path_factory):
    torch.manual_seed(1)
    return save_checkpoint(DeiTForImageClassification(DeiTConfig(**TINY)).eval(), tmp_path_factory.mktemp("deit"))


@pytest.fixture(scope="session")
def deit_teacher_dir(tmp_path_factory):
    torch.manual_seed(2)
    model = DeiTForImageClassificationWithTeacher(DeiTConfig(**TINY)).eval()
    return save_checkpoint(model, tmp_path_factory.mktemp("deit_teacher"))


@pytest.fixture(scope="session")
def resnet_dir(tmp_path_factory):
    torch.manual_seed(3)
    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)
    return save_checkpoint(ResNetForImageClassification(config).eval(), tmp_path_factory.mktemp("resnet"), 32)


@pytest.fixture
def pixel_values():
    torch.manual_seed(4)
    return torch.randn(3, 3, 16, 16)

