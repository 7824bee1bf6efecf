import os

import torch

# Without a GPU the Triton kernels run in Triton's interpreter (set before triton is imported),
# and torch.empty comes back NaN-filled: an output tile a kernel forgets to write shows in the
# result instead of passing on the values a freed buffer happened to hold.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    torch.use_deterministic_algorithms(True)

pytest_plugins = ["ftcore.testing"]
