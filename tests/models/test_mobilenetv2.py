"""MobileNetV2: torchvision-compatible layout, packaged pretrained weights, checked checkpoint loading."""
import numpy as np
import pytest
import torch

from ssvq_deploy.errors import ConfigError, WeightsError
from ssvq_deploy.models import MobileNetV2, check_state_dict, load_model, load_state, model_spec, read_checkpoint

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


@pytest.fixture(scope="module")
def state():
    return MobileNetV2().state_dict()


def test_parameter_count_and_torchvision_keys(state):
    model = MobileNetV2()
    assert sum(p.numel() for p in model.parameters()) == 3_504_872
    shapes = {"features.0.0.weight": [32, 3, 3, 3], "features.1.conv.0.0.weight": [32, 1, 3, 3],
              "features.1.conv.1.weight": [16, 32, 1, 1], "features.18.1.running_mean": [1280],
              "classifier.1.weight": [1000, 1280], "classifier.1.bias": [1000],
              "features.2.conv.0.0.weight": [96, 16, 1, 1], "features.17.conv.2.weight": [320, 960, 1, 1],
              "features.0.1.num_batches_tracked": []}
    for key, shape in shapes.items():
        assert list(state[key].shape) == shape, key
    assert len(state) == 314  # torchvision mobilenet_v2: 52 convs, 52 BNs x 5, classifier weight + bias
    out = model.eval()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1000)


def _china_photo() -> torch.Tensor:
    from PIL import Image
    from sklearn.datasets import load_sample_image
    img = Image.fromarray(load_sample_image("china.jpg"))
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return ((x - IMAGENET_MEAN) / IMAGENET_STD)[None]


def test_pretrained_weights_classify_a_photo():
    model = load_model("mobilenetv2")
    assert not model.training
    with torch.no_grad():
        probs = model(_china_photo()).softmax(-1)[0]
    top = int(probs.argmax())
    # the photo shows a Chinese temple: ImageNet 698 'palace' / 663 'monastery'; a random net gives ~0.001
    assert probs[top] > 0.2, (top, float(probs[top]))
    assert top in (698, 663), top


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_read_checkpoint_wrapped(tmp_path, state, wrapper):
    path = tmp_path / "ckpt.pth"
    torch.save({wrapper: state, "epoch": 3}, path)
    got = read_checkpoint(path)
    assert set(got) == set(state) and torch.equal(got["classifier.1.weight"], state["classifier.1.weight"])
    model = load_model("mobilenetv2", path)
    assert torch.equal(model.state_dict()["features.0.0.weight"], state["features.0.0.weight"])


def test_wrong_checkpoints_listed(tmp_path, state):
    bad = dict(state)
    bad["features.1.conv.1.weight"] = torch.zeros(16, 32, 3, 3)
    del bad["classifier.1.bias"]
    bad["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(WeightsError) as info:
        load_model("mobilenetv2", path)
    msg = str(info.value)
    assert "features.1.conv.1.weight: shape [16, 32, 3, 3], model expects [16, 32, 1, 1]" in msg
    assert "missing classifier.1.bias" in msg
    assert "unexpected extra.weight" in msg
    with pytest.raises(WeightsError, match="missing classifier.1.bias"):
        load_state(MobileNetV2(), {k: v.numpy() for k, v in bad.items()})


def test_many_problems_are_summarised():
    with pytest.raises(WeightsError, match=r"\.\.\. and \d+ more"):
        check_state_dict({}, MobileNetV2())


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(WeightsError, match="cannot read weights file"):
        read_checkpoint(junk)
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(WeightsError, match="state_dict of tensors"):
        read_checkpoint(notdict)
    with pytest.raises(WeightsError):
        load_model("mobilenetv2", junk)


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'.*mobilenetv2"):
        load_model("resnet9000")
    with pytest.raises(ConfigError, match="resnet9000"):
        model_spec("resnet9000")
