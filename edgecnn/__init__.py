"""edgecnn: put CNN image classifiers on edge devices, and know how fast and how accurate they are there."""

__version__ = "0.1.0"
