import pytest
import torch
from torch import nn


def _tiny_convnet(seed: int = 0) -> nn.Sequential:
    """First conv, depthwise, grouped, pointwise and linear layers: every kind the compressor must handle."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),               # 432 weights
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),   # 144
        nn.Conv2d(16, 16, 3, padding=1, groups=4), nn.ReLU(),    # 576
        nn.Conv2d(16, 8, 1),                                     # 128
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),  # 80
    ).eval()


@pytest.fixture
def tiny_convnet():
    """Factory: tiny_convnet(seed=0) -> a fresh deterministic model."""
    return _tiny_convnet
