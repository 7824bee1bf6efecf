"""NeMo Gym environments for ftcore (torch is imported only inside hooks)."""

__version__ = "0.1.2"
