"""Local plugins for tests, activated by dotted path: ``plugins: [ftcore.testing.plugins.stop_at_step]``."""
