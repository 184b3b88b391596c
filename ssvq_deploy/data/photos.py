"""Real photographs bundled with scikit-learn, scikit-image and matplotlib, preprocessed as for ImageNet models.

Each photo has a source name; the two views of skimage's stereo motorcycle share one source, so any train /
held-out split must be made by source, never by photo.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class Photo(NamedTuple):
    name: str
    source: str
    load: Callable[[], np.ndarray]  # -> [H, W, 3] or [H, W] uint8


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load():
        from sklearn.datasets import load_sample_image
        return load_sample_image(name)
    return load


def _skimage(name: str, view: int | None = None) -> Callable[[], np.ndarray]:
    def load():
        import skimage.data
        image = getattr(skimage.data, name)()
        return image if view is None else image[view]
    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


PHOTOS: list[Photo] = [
    Photo("china", "sklearn/china", _sklearn("china.jpg")),
    Photo("flower", "sklearn/flower", _sklearn("flower.jpg")),
    Photo("grace_hopper", "matplotlib/grace_hopper", _grace_hopper),
    *(Photo(n, f"skimage/{n}", _skimage(n)) for n in (
        "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
        "camera", "coins", "grass", "brick", "gravel", "moon", "clock", "page", "text")),
    Photo("motorcycle_left", "skimage/stereo_motorcycle", _skimage("stereo_motorcycle", 0)),
    Photo("motorcycle_right", "skimage/stereo_motorcycle", _skimage("stereo_motorcycle", 1)),
]


def imagenet_tensor(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """Resize the short side to size*8/7, centre-crop ``size``, scale to [0,1], ImageNet-normalise: [3, size, size]."""
    pil = Image.fromarray(image).convert("RGB")
    scale = round(size * 8 / 7) / min(pil.size)
    pil = pil.resize((max(size, round(pil.width * scale)), max(size, round(pil.height * scale))), Image.BILINEAR)
    left, top = (pil.width - size) // 2, (pil.height - size) // 2
    array = np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    return torch.from_numpy(((array - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy())


def photo_batch(names: list[str] | None = None, size: int = 224) -> tuple[list[str], torch.Tensor]:
    """The named photos (default: all) as one [n, 3, size, size] batch."""
    by_name = {p.name: p for p in PHOTOS}
    unknown = sorted(set(names or []) - set(by_name))
    if unknown:
        raise ConfigError(f"unknown photos {unknown}; available: {', '.join(by_name)}")
    chosen = [by_name[n] for n in names] if names else PHOTOS
    return [p.name for p in chosen], torch.stack([imagenet_tensor(p.load(), size) for p in chosen])
