import sys
from pathlib import Path

import pytest

from ssvq_deploy.data import photo_batch
from ssvq_deploy.emulator import calibrate, compile_network, read_onnx
from ssvq_deploy.export.onnx_export import compressed_onnx, float_onnx
from ssvq_deploy.models import load_model
from ssvq_deploy.pipeline import decoded_model
from ssvq_deploy.quant.compress import compress_model
from ssvq_deploy.quant.config import QuantConfig

sys.path.insert(0, str(Path(__file__).parent))  # the helpers layers.py and qdq.py

SIZE = 96  # MobileNetV2 is fully convolutional + global pooling: 96x96 runs the same layers at a fifth of the cost


@pytest.fixture(scope="session")
def mobilenet():
    """MobileNetV2 (pretrained) and its SSVQ compression (k=16, d=8, 2 k-means iterations: enough for exactness)."""
    original = load_model("mobilenetv2")
    compressed = compress_model(original, QuantConfig(k=16, d=8, iters=2), "mobilenetv2")
    return original, compressed


@pytest.fixture(scope="session")
def photos():
    return photo_batch(size=SIZE)[1].numpy()


@pytest.fixture(scope="session")
def mobilenet_graphs(mobilenet):
    original, compressed = mobilenet
    shape = (1, 3, SIZE, SIZE)
    return {"int8": read_onnx(float_onnx(original, shape)),
            "ssvq": read_onnx(compressed_onnx(compressed, decoded_model(compressed), shape))}


@pytest.fixture(scope="session")
def calibrations(mobilenet_graphs, photos):
    return {build: calibrate(graph, photos) for build, graph in mobilenet_graphs.items()}


@pytest.fixture(scope="session")
def mobilenet_networks(mobilenet_graphs, calibrations):
    """Compiled int8 and SSVQ MobileNetV2 for both requant conventions: {(build, mode): network}."""
    return {(build, mode): compile_network(graph, calibrations[build], mode)
            for build, graph in mobilenet_graphs.items() for mode in ("gemmlowp", "fp32")}
