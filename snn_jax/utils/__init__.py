"""Small shared utilities: timing, environment description, atomic file
writes."""

from snn_jax.utils.env import device_info, versions
from snn_jax.utils.files import atomic_write, write_json
from snn_jax.utils.timing import time_fn

__all__ = ["atomic_write", "device_info", "time_fn", "versions", "write_json"]
