"""Checkpoint formats: one module per source, all producing a :class:`ModelBundle` of our networks.

Readers never execute code from a model file: PyTorch files are read with
``torch.load(weights_only=True)``, NVIDIA pickles with an allow-list unpickler
(:mod:`studio.core.formats.nvidia_pkl`), and our own files are safetensors + JSON.
Foreign key names never reach the networks: each reader has one name table.
"""

from __future__ import annotations

from studio.core.formats.base import ModelBundle, detect_format, load_checkpoint, safe_torch_load

__all__ = ["ModelBundle", "detect_format", "load_checkpoint", "safe_torch_load"]
