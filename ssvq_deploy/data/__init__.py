"""Real data that ships inside installed packages (no downloads): photos for calibration and verification."""
from .augment import random_crops, split_by_source
from .photos import PHOTOS, imagenet_tensor, photo_batch

__all__ = ["PHOTOS", "imagenet_tensor", "photo_batch", "random_crops", "split_by_source"]
