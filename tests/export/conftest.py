import pytest
import torch
from torch import nn

from ssvq_deploy.quant.compress import compress_model
from ssvq_deploy.quant.config import QuantConfig
from ssvq_deploy.models import load_state



class TinyNet(nn.Module):
    """First conv, depthwise, pointwise, grouped conv, BN, ReLU6, residual add and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.pw = nn.Conv2d(16, 32, 1)
        self.grouped = nn.Conv2d(32, 32, 3, 1, 1, groups=4)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.dw(self.stem(x)) + self.stem(x)
        x = self.grouped(self.pw(x))
        return self.head(x.mean((2, 3)))


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyNet()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def compress_tiny(method: str = "ssvq", k: int = 8, d: int = 4):
    model = tiny_model()
    compressed = compress_model(model, QuantConfig(method=method, k=k, d=d, iters=5), "tiny")
    reference = load_state(TinyNet(), compressed.state_dict())
    return model, compressed, reference


@pytest.fixture(scope="module")
def tiny_ssvq():
    return compress_tiny("ssvq")


@pytest.fixture(scope="module")
def tiny_vq():
    return compress_tiny("vq", k=16, d=4)
