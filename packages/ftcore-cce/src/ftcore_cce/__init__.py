"""Cut Cross Entropy for ftcore (torch is imported only inside hooks)."""

__version__ = "0.2.0"
