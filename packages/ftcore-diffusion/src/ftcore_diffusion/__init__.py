"""ftcore-diffusion: LLaDA-style masked diffusion training and decoding."""

__version__ = "0.2.2"
