"""Networks, one family per module. Every network keeps its constructor kwargs as ``self.config``
(a frozen dataclass), so ``build(class_name, config)`` rebuilds it from a manifest.

Only classes in :data:`NETWORKS` can be named by a model file: a manifest never chooses code.
"""

from __future__ import annotations

import importlib

import torch

NETWORKS: dict[str, str] = {
    "Generator": "studio.core.nets.stylegan2:Generator",
    "Discriminator": "studio.core.nets.stylegan2:Discriminator",
    "GradualStyleEncoder": "studio.core.nets.psp:GradualStyleEncoder",
    "Encoder4Editing": "studio.core.nets.psp:Encoder4Editing",
    "E2StyleEncoder": "studio.core.nets.e2style:E2StyleEncoder",
    "SAEEncoder": "studio.core.nets.sae:SAEEncoder",
    "CRGEncoder": "studio.core.nets.crg:CRGEncoder",
    "DistillStudent": "studio.core.nets.distill:DistillStudent",
}


def register_network(name: str, target: str) -> None:
    """Allow a network class (``"module:Class"`` inside ``studio``/``trainers``) in model files."""
    if not target.startswith(("studio.", "trainers.")):
        raise ValueError("only StyleStudio's own network classes can be registered")
    NETWORKS[name] = target


def network_class(name: str) -> type[torch.nn.Module]:
    try:
        target = NETWORKS[name]
    except KeyError:
        raise KeyError(f"unknown network class {name!r}; known: {sorted(NETWORKS)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def build(name: str, config: dict) -> torch.nn.Module:
    """Instantiate a registered network class from its JSON config."""
    cls = network_class(name)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return cls(**kwargs)


def class_name_of(net: torch.nn.Module) -> str:
    for name, target in NETWORKS.items():
        module, _, cls = target.partition(":")
        if type(net).__module__ == module and type(net).__name__ == cls:
            return name
    raise KeyError(f"{type(net).__name__} is not a registered network class")
