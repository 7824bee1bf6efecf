"""Liger kernels for ftcore (torch and liger-kernel are imported only inside hooks)."""

__version__ = "0.1.0"
