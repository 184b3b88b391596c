"""Typed errors: every bad input the toolchain rejects raises one of these, naming the problem."""


class SSVQError(Exception):
    """Base class of all ssvq-deploy errors."""


class ConfigError(SSVQError, ValueError):
    """A bad k, d, recipe entry, model name or option."""


class FormatError(SSVQError, ValueError):
    """A packed layer or compressed file that is malformed, truncated, corrupt or of another version."""


class WeightsError(SSVQError, ValueError):
    """Weights that cannot be compressed or loaded (NaN/Inf, empty, wrong shapes, missing file)."""


class CalibrationError(SSVQError, ValueError):
    """Calibration data that cannot set static activation ranges (none given, NaN/Inf activations)."""


class VerificationError(SSVQError):
    """An exported model disagrees with its PyTorch reference beyond the stated tolerance."""
