import sys

import pytest
import torch

pytest_plugins = ["ftcore.testing"]


@pytest.fixture(autouse=True)
def restore_transformers():
    """Undo Liger's module-level patches (classes, rotary functions, cross entropy): Liger patches
    transformers process-wide, so every test restores it afterwards."""
    saved = {
        name: dict(vars(module))
        for name, module in list(sys.modules.items())
        if name.startswith("transformers.models.") and name.count(".") == 3
    }
    cross_entropy = torch.nn.functional.cross_entropy
    yield
    for name, namespace in saved.items():
        vars(sys.modules[name]).update(namespace)
    torch.nn.functional.cross_entropy = cross_entropy
