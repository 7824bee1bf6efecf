"""MoE expert kernels for ftcore (torch and triton are imported only inside hooks)."""

__version__ = "0.4.4"
