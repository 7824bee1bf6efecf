"""ftcore-grokfast: the Grokfast EMA gradient filter as an ftcore plugin."""

__version__ = "0.1.2"
