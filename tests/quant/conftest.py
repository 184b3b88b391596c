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


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on this 2-core machine, OpenMP barriers stall badly whenever another process is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
