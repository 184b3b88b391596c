"""Real data that ships inside installed packages (no downloads): photos for calibration and verification, English
text passages for text models."""
from .augment import random_crops, random_spans, split_by_source, trim_padding
from .photos import PHOTOS, imagenet_tensor, photo_batch
from .texts import DOCUMENTS, Passage, split_texts_by_document, text_passages

__all__ = ["DOCUMENTS", "PHOTOS", "Passage", "imagenet_tensor", "photo_batch", "random_crops", "random_spans",
           "split_by_source", "split_texts_by_document", "text_passages", "trim_padding"]
