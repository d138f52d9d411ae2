"""Small shared utilities: timing and environment description."""

from snn_jax.utils.env import device_info, versions
from snn_jax.utils.timing import time_fn

__all__ = ["device_info", "time_fn", "versions"]
