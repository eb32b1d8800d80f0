"""StyleStudio: edit faces with StyleGAN2.

Layers (imports point down only): ``studio.core`` (networks, formats, alignment; torch/numpy, no Qt)
-> ``studio.engine`` (edit session, render cache, workers; plain Python) -> ``studio.gui`` (PySide6 views).
"""

__version__ = "0.1.0"
