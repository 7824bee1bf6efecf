"""Iterative confidence-based unmasking (LLaDA-style sampling).

Each step predicts every masked position (the mask token itself is never a prediction), then keeps
the ``ceil(remaining / steps left)`` most confident predictions; the last step fills the rest.
"""

from __future__ import annotations

from typing import Any

import torch

from ftcore.errors import FtcoreError
from ftcore_diffusion.loss import shifted_logits


@torch.no_grad()
def unmask(
    model: Any, ids: torch.Tensor, mask_token_id: int, steps: int, temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # fmt: skip
    """Fill the mask tokens of ``ids`` ([1, L]) and return the completed sequence."""
    ids = ids.clone()
    batch = {"input_ids": ids}
    for step in range(steps):
        masked = ids == mask_token_id
        remaining = int(masked.sum())
        if remaining == 0:
            break
        logits = shifted_logits(model, ids, batch).float()
        logits[..., mask_token_id] = float("-inf")
        if temperature > 0:
            gumbel = -torch.log(
                -torch.log(torch.rand(logits.shape, generator=generator).clamp(1e-10, 1))
            )
            choice = (logits / temperature + gumbel.to(logits.device)).argmax(-1)
        else:
            choice = logits.argmax(-1)
        confidence = torch.softmax(logits, -1).gather(-1, choice[..., None])[..., 0]
        confidence = confidence.masked_fill(~masked, float("-inf"))
        take = remaining if step == steps - 1 else max(1, -(-remaining // (steps - step)))
        chosen = confidence.flatten().topk(take).indices
        flat = ids.flatten()
        flat[chosen] = choice.flatten()[chosen]
        ids = flat.view_as(ids)
        batch = {"input_ids": ids}
    return ids


def parse_prompt(prompt: str, default_new: int = 64) -> tuple[str, str, float]:
    """``:complete N text`` -> ("complete", text, N); ``:mask R text`` -> ("mask", text, R)."""
    words = prompt.strip().split(maxsplit=2)
    if words and words[0] == ":complete":
        count = int(words[1]) if len(words) > 1 and words[1].isdigit() else default_new
        rest = words[2] if len(words) > 2 and words[1].isdigit() else " ".join(words[1:])
        return "complete", rest, float(count)
    if words and words[0] == ":mask":
        try:
            ratio = float(words[1]) if len(words) > 1 else 0.5
        except ValueError:
            ratio = float("nan")
        if not 0.0 <= ratio <= 1.0:
            raise FtcoreError(f":mask takes a ratio in [0, 1] first, got {words[1]!r}")
        return "mask", words[2] if len(words) > 2 else "", ratio
    return "complete", prompt, float(default_new)
