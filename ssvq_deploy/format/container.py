"""The compressed-model file: safetensors tensors + a JSON header in the safetensors metadata.

Tensors: ``q/<layer>/codebook`` (fp16 [k, d]), ``q/<layer>/indices`` (uint8), ``q/<layer>/signs`` (uint8, SSVQ only),
``dense/<state_dict key>`` (biases, norms, uncompressed layers, integer buffers). Metadata key ``ssvq`` holds JSON:
``{"format": "ssvq-deploy", "format_version": 1, "model": ..., "meta": {...}, "layers": [{name, shape, k, d,
method}], "crc32": {tensor: crc}}``. Loading checks version, presence, CRC32 of every tensor and each layer's layout.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import save_file, safe_open

from ..atomic import atomic_path
from ..errors import FormatError
from .layer import FORMAT_VERSION, PackedLayer

FORMAT_NAME = "ssvq-deploy"


@dataclass
class CompressedModel:
    """A compressed network: packed layers by module name, and the remaining float state."""

    model: str
    layers: dict[str, PackedLayer]
    dense: dict[str, np.ndarray]  # state_dict key -> array (float32, or int for counters)
    meta: dict = field(default_factory=dict)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Full float32 state dict with every packed weight decoded by the golden decoder."""
        state = dict(self.dense)
        state.update({f"{name}.weight": layer.decode() for name, layer in self.layers.items()})
        return state


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).tobytes())


def save(model: CompressedModel, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically."""
    tensors: dict[str, np.ndarray] = {}
    for name, layer in model.layers.items():
        tensors[f"q/{name}/codebook"] = layer.codebook
        tensors[f"q/{name}/indices"] = layer.indices
        if layer.signs is not None:
            tensors[f"q/{name}/signs"] = layer.signs
    for key, value in model.dense.items():
        value = np.asarray(value)
        tensors[f"dense/{key}"] = np.ascontiguousarray(value).reshape(value.shape)  # keeps 0-d buffers 0-d
    header = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": model.model, "meta": model.meta,
        "layers": [{"name": n, "shape": list(l.shape), "k": l.k, "d": l.d, "method": l.method}
                   for n, l in model.layers.items()],
        "crc32": {key: _crc(t) for key, t in tensors.items()},
    }
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={"ssvq": json.dumps(header)})
        except SafetensorError as exc:
            raise FormatError(f"{path}: cannot store the model: {exc}") from exc


def load(path: str | Path) -> CompressedModel:
    """Read and fully validate a compressed-model file; raises :class:`FormatError` naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such compressed file")
    try:
        with safe_open(str(path), "np") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable compressed file (truncated or corrupt): {exc}") from exc
    try:
        header = json.loads(metadata["ssvq"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: missing or unreadable 'ssvq' header; not an ssvq-deploy file") from exc
    if header.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: format {header.get('format')!r} is not {FORMAT_NAME!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise FormatError(f"{path}: format version {header.get('format_version')!r} is not supported "
                          f"(this build reads version {FORMAT_VERSION})")
    crcs = header.get("crc32", {})
    if set(crcs) != set(tensors):
        raise FormatError(f"{path}: tensors {sorted(set(crcs) ^ set(tensors))} do not match the header")
    for key, tensor in tensors.items():
        if _crc(tensor) != crcs[key]:
            raise FormatError(f"{path}: checksum mismatch in tensor {key!r} (corrupt file)")
    layers = {}
    for entry in header["layers"]:
        name = entry["name"]
        layers[name] = PackedLayer(name, tuple(entry["shape"]), entry["k"], entry["d"],
                                   tensors[f"q/{name}/codebook"], tensors[f"q/{name}/indices"],
                                   tensors.get(f"q/{name}/signs"))
        if layers[name].method != entry["method"]:
            raise FormatError(f"{path}: layer {name} is stored as {layers[name].method}, header says {entry['method']}")
    dense = {key[len("dense/"):]: t for key, t in tensors.items() if key.startswith("dense/")}
    return CompressedModel(header["model"], layers, dense, header.get("meta", {}))
