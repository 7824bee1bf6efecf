"""ftcore-example: a template plugin that reports and optionally freezes parameters."""

__version__ = "0.1.0"
