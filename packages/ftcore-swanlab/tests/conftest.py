import os

os.environ.setdefault("SWANLAB_INTERACTIVE", "false")

pytest_plugins = ["ftcore.testing"]
