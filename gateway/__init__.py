"""SMPP 3.4 gateway proxy with inline SMS opt-out compliance."""

__version__ = "0.1.0"
