"""Config: the core schema, its composition with plugin schemas, loading and redaction."""

from __future__ import annotations

from ftcore.config.load import LoadedConfig, load_config, read_yaml
from ftcore.config.redact import redact
from ftcore.config.schema import CoreConfig, DatasetConfig

#: The type every validated config has: the core schema, composed with plugin keys as a subclass.
FtcoreConfig = CoreConfig

__all__ = [
    "CoreConfig",
    "DatasetConfig",
    "FtcoreConfig",
    "LoadedConfig",
    "load_config",
    "read_yaml",
    "redact",
]
