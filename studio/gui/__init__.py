"""Qt views (PySide6). The only layer that may import Qt."""
