"""The one packed format shared by every backend: layout, bit order, version, accounting, file container."""
from .accounting import LayerBits, bits_per_weight, compression_ratio, dense_bits, quantized_bits
from .bits import pack_bits, packed_nbytes, unpack_bits
from .container import CompressedModel, load, save
from .layer import FORMAT_VERSION, PackedLayer, decode_parts, index_bits

__all__ = ["FORMAT_VERSION", "PackedLayer", "decode_parts", "CompressedModel", "LayerBits", "bits_per_weight", "compression_ratio",
           "dense_bits", "quantized_bits", "pack_bits", "packed_nbytes", "unpack_bits", "index_bits", "load", "save"]
