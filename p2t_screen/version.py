"""p2t's version: the bottom room, so any module may name it without importing the package."""

__version__ = "0.1.0"
