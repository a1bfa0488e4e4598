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
)

from helpers import save_checkpoint, tiny_model


@pytest.fixture(scope="session")
def vit_dir(tmp_path_factory):
    return save_checkpoint(tiny_model(), tmp_path_factory.mktemp("vit"))


@pytest.fixture(scope="session")
def deit_dir(tmp_path_factory):
    return save_checkpoint(tiny_model(DeiTForImageClassification, DeiTConfig, seed=1), tmp_path_factory.mktemp("deit"))


@pytest.fixture(scope="session")
def deit_teacher_dir(tmp_path_factory):
    model = tiny_model(DeiTForImageClassificationWithTeacher, DeiTConfig, seed=2)
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

