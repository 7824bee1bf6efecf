pytest_plugins = ["ftcore.testing"]
