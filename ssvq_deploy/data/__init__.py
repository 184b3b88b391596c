"""Real data that ships inside installed packages (no downloads): photos for calibration and verification."""
from .photos import PHOTOS, imagenet_tensor, photo_batch

__all__ = ["PHOTOS", "imagenet_tensor", "photo_batch"]
