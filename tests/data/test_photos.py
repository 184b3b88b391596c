"""Bundled photos: real images, ImageNet preprocessing, a split by source, deterministic random crops."""
import numpy as np
import pytest
import torch

from ssvq_deploy.data import PHOTOS, imagenet_tensor, photo_batch, random_crops, split_by_source
from ssvq_deploy.data.photos import IMAGENET_MEAN, IMAGENET_STD
from ssvq_deploy.errors import ConfigError


def test_split_is_by_source_and_covers_every_photo():
    train, held = split_by_source()
    source = {p.name: p.source for p in PHOTOS}
    assert set(train) | set(held) == set(source) and not set(train) & set(held)
    assert not {source[n] for n in train} & {source[n] for n in held}
    # the two views of the stereo motorcycle share a source, so they land on the same side
    assert ("motorcycle_left" in train) == ("motorcycle_right" in train)
    assert len(held) >= 4 and len(train) >= 12


def test_imagenet_tensor_normalises_a_known_image():
    image = np.full((300, 400, 3), 255, dtype=np.uint8)  # white
    x = imagenet_tensor(image, size=32)
    assert x.shape == (3, 32, 32)
    expected = (1.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(x[:, 0, 0].numpy(), expected, rtol=1e-6)


def test_photo_batch_and_unknown_names():
    names, x = photo_batch(["china", "coffee"], size=64)
    assert names == ["china", "coffee"] and x.shape == (2, 3, 64, 64)
    assert x.std() > 0.5  # real photos, not blank
    with pytest.raises(ConfigError, match="nope"):
        photo_batch(["nope"])


def test_random_crops_are_deterministic_and_sized():
    images = torch.arange(2 * 3 * 40 * 50, dtype=torch.float32).reshape(2, 3, 40, 50)
    a = random_crops(images, torch.Generator().manual_seed(1), size=24)
    b = random_crops(images, torch.Generator().manual_seed(1), size=24)
    c = random_crops(images, torch.Generator().manual_seed(2), size=24)
    assert a.shape == (2, 3, 24, 24)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= images.min() and a.max() <= images.max()  # bilinear resampling stays in range
