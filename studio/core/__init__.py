"""Core: networks, checkpoint formats, image I/O and alignment. No Qt, no GUI state."""
