"""Samples during training, and the decoding loop of ``ftcore inference``."""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import TrainerCallback

from ftcore.errors import FtcoreError
from ftcore.tracking import log_samples
from ftcore_diffusion.decode import parse_prompt, unmask

log = logging.getLogger("ftcore")

SAMPLES_NAME = "diffusion_samples"
USAGE = (
    "Masked diffusion decoding. `:complete N text` appends N masks to the text and fills them; "
    "`:mask R text` masks a share R (0 to 1) of the text's tokens and fills them back. "
    "Plain text is `:complete 64 text`."
)


def _show(tokenizer: Any, ids: torch.Tensor, mask_token_id: int) -> str:
    words = [
        "[MASK]" if token == mask_token_id else tokenizer.decode([token]) for token in ids.tolist()
    ]
    return "".join(words)


class SampleCallback(TrainerCallback):
    """Every ``generation_interval`` steps: mask the answers of a few training rows and fill them.

    The samples are printed and sent to the run's trackers (``ftcore.tracking.log_samples``).
    """

    def __init__(self, block: Any, plugin: Any):
        self.block = block
        self.plugin = plugin
        self._warned_rows: set[int] = set()

    def on_step_end(
        self,
        args,
        state,
        control,
        model=None,
        processing_class=None,
        train_dataloader=None,
        **kwargs,
    ):
        if not state.is_world_process_zero or state.global_step % self.block.generation_interval:
            return
        dataset = getattr(train_dataloader, "dataset", None)
        if dataset is None or processing_class is None:
            return
        was_training = model.training
        model.eval()
        rows = []
        for index in range(min(self.block.num_generation_samples, len(dataset))):
            row = dataset[index]
            ids = torch.tensor(
                [row["input_ids"][: self.block.generation_max_length]], device=model.device
            )
            labels = torch.tensor(
                [row["labels"][: self.block.generation_max_length]], device=ids.device
            )
            if not (labels != -100).any():
                self._warn_no_answer(index, row["labels"])
                continue
            masked = ids.masked_fill(labels != -100, self.plugin.mask_token_id)
            filled = unmask(model, masked, self.plugin.mask_token_id, self.block.generation_steps,
                            self.block.generation_temperature)  # fmt: skip
            rows.append({
                "original": processing_class.decode(ids[0]),
                "masked": _show(processing_class, masked[0], self.plugin.mask_token_id),
                "generated": processing_class.decode(filled[0]),
            })  # fmt: skip
            log.info(
                "ftcore: diffusion sample %d at step %d\n  original:  %s\n  masked:    %s\n  generated: %s",
                index + 1, state.global_step, *rows[-1].values(),
            )  # fmt: skip
        model.train(was_training)
        if rows and self.plugin.trainer is not None:
            log_samples(self.plugin.trainer, SAMPLES_NAME, rows)

    def _warn_no_answer(self, index: int, labels: list[int]) -> None:
        """Once per row: its first ``generation_max_length`` tokens are all prompt."""
        if index in self._warned_rows:
            return
        self._warned_rows.add(index)
        prompt = next((i for i, label in enumerate(labels) if label != -100), None)
        if prompt is None:
            log.warning("ftcore: diffusion sample %d is skipped: it has no answer token to mask",
                        index + 1)  # fmt: skip
            return
        log.warning(
            "ftcore: diffusion sample %d is skipped: its first %d tokens (generation_max_length) "
            "hold no answer token to mask, as its prompt is %d tokens long; raise "
            "diffusion.generation_max_length above that",
            index + 1, self.block.generation_max_length, prompt,
        )  # fmt: skip


def make_handler(block: Any, model: Any, tokenizer: Any, mask_token_id: int):
    """``prompt -> text``: the masked input and what decoding filled in."""

    def handle(prompt: str) -> str:
        mode, text, amount = parse_prompt(prompt)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        if tokenizer.bos_token_id is not None:
            ids = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], dim=1)
        if mode == "complete":
            limit = getattr(model.config, "max_position_embeddings", None)
            if limit and ids.shape[1] + int(amount) > limit:
                raise FtcoreError(
                    f":complete {int(amount)}: the prompt's {ids.shape[1]} tokens and the "
                    f"completion must fit the model's {limit} positions; ask for at most "
                    f"{max(limit - ids.shape[1], 0)}"
                )
            ids = torch.cat([ids, torch.full((1, int(amount)), mask_token_id)], dim=1)
        else:
            chosen = torch.rand(ids.shape) < amount
            chosen[:, 0] = False
            ids = ids.masked_fill(chosen, mask_token_id)
        ids = ids.to(model.device)
        filled = unmask(model, ids, mask_token_id, min(block.num_diffusion_steps, int((ids == mask_token_id).sum()) or 1),
                        block.generation_temperature)  # fmt: skip
        start = 1 if tokenizer.bos_token_id is not None else 0
        masked_text = _show(tokenizer, ids[0, start:], mask_token_id)
        return f"masked:    {masked_text}\ngenerated: {tokenizer.decode(filled[0, start:], skip_special_tokens=True)}"

    handle.usage = USAGE  # shown by ftcore inference --gradio
    return handle
