"""``ftcore consolidate``: a sharded checkpoint (FSDP2 or DeepSpeed ZeRO) made into a normal model.

The shards are merged with the libraries that wrote them (torch distributed checkpoint through
accelerate, DeepSpeed's ``zero_to_fp32``), loaded into the model the config builds (so an adapter
run gives an adapter again), and saved with ``save_pretrained`` and the tokenizer, into a staging
folder that only becomes the output once complete.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from ftcore.errors import FtcoreError, first_line

log = logging.getLogger("ftcore")


def sharded_state_dict(checkpoint: Path, scratch: Path) -> dict[str, Any]:
    """The full state dict of a sharded checkpoint folder (``checkpoint-N``).

    FSDP shards are merged into one file under ``scratch`` (next to the output, not the system
    temporary folder, which may be too small for a large model) and read back.
    """
    fsdp = sorted(checkpoint.glob("pytorch_model_fsdp_*"))
    if fsdp:
        from accelerate.utils import merge_fsdp_weights
        from safetensors.torch import load_file
        from torch.distributed.checkpoint.api import CheckpointException

        if not (fsdp[0] / ".metadata").is_file():
            raise FtcoreError(
                f"{fsdp[0]} has no .metadata file: it is not a whole FSDP checkpoint (was it "
                "copied whole?)"
            )
        with tempfile.TemporaryDirectory(dir=scratch, prefix=".ftcore-merge-") as merged:
            try:
                merge_fsdp_weights(str(fsdp[0]), merged, safe_serialization=True)
            except (CheckpointException, OSError, RuntimeError, ValueError) as exc:
                raise FtcoreError(
                    f"{fsdp[0]} does not read as FSDP shards ({first_line(exc)})"
                ) from None
            state: dict[str, Any] = {}
            for file in sorted(Path(merged).glob("*.safetensors")):
                state.update(load_file(str(file)))
            return state
    if any(checkpoint.glob("global_step*")):
        try:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
        except ImportError:
            raise FtcoreError(
                f"{checkpoint} is a DeepSpeed checkpoint; consolidating it needs the deepspeed "
                'package: pip install "ftcore[deepspeed]"'
            ) from None
        return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint))
    if any(checkpoint.glob("*.safetensors")):
        raise FtcoreError(f"{checkpoint} already holds full weights; nothing to consolidate")
    raise FtcoreError(
        f"{checkpoint} has no sharded weights (pytorch_model_fsdp_0/ of FSDP or global_step*/ of "
        "DeepSpeed); give a checkpoint-N folder of a sharded run"
    )


def _strip_wrappers(key: str) -> str:
    for prefix in ("_orig_mod.", "module."):
        key = key.removeprefix(prefix)
    return key


def load_into(model: Any, state: dict[str, Any]) -> int:
    """Copy ``state`` into ``model``: every key must belong to it, every trained weight must be
    there, shapes must agree. Returns how many tensors were loaded."""
    expected = model.state_dict()
    state = {_strip_wrappers(key): value for key, value in state.items()}
    advice = "consolidate with the config that trained this checkpoint"
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise FtcoreError(
            f"the checkpoint has {len(unknown)} weights the config's model does not "
            f"(first: {unknown[0]}); {advice}"
        )
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    missing = sorted(trained - set(state))
    if missing:
        raise FtcoreError(
            f"the checkpoint lacks {len(missing)} trained weights of the config's model "
            f"(first: {missing[0]}); {advice}"
        )
    for name, value in state.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise FtcoreError(
                f"{name} is {tuple(value.shape)} in the checkpoint and "
                f"{tuple(expected[name].shape)} in the config's model; {advice}"
            )
    model.load_state_dict(state, strict=False)
    return len(state)


def consolidate(loaded: Any, checkpoint: str, output: str) -> Path:
    """Write the model of ``checkpoint`` as ``save_pretrained`` would, to ``output``."""
    from ftcore.modeling import load_model, load_tokenizer
    from ftcore.saving import publish, staging_dir

    folder = Path(checkpoint)
    if not folder.exists():
        raise FtcoreError(f"checkpoint {checkpoint} does not exist")
    if not folder.is_dir():
        raise FtcoreError(f"checkpoint {checkpoint} is not a folder")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    state = sharded_state_dict(folder, Path(output).parent)
    cfg = loaded.cfg.model_copy(update={"fsdp_config": None, "deepspeed": None})
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, loaded.host)
    count = load_into(model, state)
    staging = staging_dir(output)
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    publish(staging, output)
    log.info("ftcore: consolidated %d tensors of %s into %s", count, folder, output)
    return Path(output)
