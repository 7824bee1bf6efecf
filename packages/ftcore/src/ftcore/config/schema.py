"""The core config schema: the keys every run understands, named as Axolotl users know them.

Plugins add their own keys (see ``ftcore_config_schema``); the two are composed in
:mod:`ftcore.config.compose`. Every field has a description: the configuration reference in
``docs/configuration.md`` is generated from them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ftcore.suggest import did_you_mean

BUILTIN_DATASET_TYPES = ("completion", "alpaca", "chat_template", "input_output")

#: Dataset types of preference and RL training, and the ``rl`` methods each one serves.
RL_DATASET_TYPES = {
    "preference": ("dpo", "orpo"),
    "chatml.intel": ("dpo", "orpo"),
    "chatml.argilla": ("dpo", "orpo"),
    "chatml.ultra": ("dpo", "orpo"),
    "kto": ("kto",),
    "prompt": ("grpo",),
}
RL_METHODS = ("dpo", "kto", "orpo", "grpo")


class StrictModel(BaseModel):
    """Base of every config block: unknown keys are errors, assignment is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class DatasetConfig(StrictModel):
    """One entry of ``datasets:`` (or ``test_datasets:``)."""

    path: str = Field(
        description="Local file or folder (JSON, JSONL, Parquet, CSV, `save_to_disk`), or a hub "
        "dataset name."
    )
    type: str = Field(
        "completion",
        description="How rows become training examples: `completion`, `alpaca`, `chat_template`, "
        "`input_output`, or a type a plugin adds.",
    )
    name: str | None = Field(None, description="Dataset configuration name (hub datasets).")
    split: str = Field("train", description="Split to read.")
    revision: str | None = Field(
        None, description="Hub datasets: the git revision to read (pins the tokenization cache)."
    )
    data_files: str | list[str] | None = Field(
        None, description="Files to read inside `path` when it is a folder or hub repo."
    )
    ds_type: Literal["json", "parquet", "csv", "text", "arrow"] | None = Field(
        None, description="File format, when it cannot be told from the file extension."
    )
    field: str | None = Field(
        None, description="Column holding the text for `completion` (default `text`)."
    )
    field_messages: str = Field(
        "messages", description="Column holding the conversation for `chat_template`."
    )
    message_property_mappings: dict[str, str] = Field(
        default_factory=lambda: {"role": "role", "content": "content"},
        description="Map of message keys: `{role: from, content: value}` for ShareGPT-style rows.",
    )
    roles_to_train: list[str] = Field(
        default_factory=lambda: ["assistant"],
        description="Roles whose tokens carry loss for `chat_template`.",
    )
    chat_template: str | None = Field(
        None,
        description="Chat template for this dataset: a Jinja string or a named template; "
        "default: the tokenizer's.",
    )
    logprobs_field: str = Field(
        "logprobs",
        description="Column holding a teacher's top-k logprobs per token (`kd.chat_template`).",
    )
    temperature: float = Field(
        1.0, gt=0.0, description="Sampling temperature the teacher's logprobs were made at (KD)."
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("dataset_types")
        if known is not None and value not in known:
            raise PydanticCustomError(
                "ftcore_unknown_dataset_type",
                "unknown dataset type '{value}'{hint}",
                {"value": value, "hint": did_you_mean(value, known)},
            )
        return value


class SpecialTokens(StrictModel):
    """``special_tokens:`` set on the tokenizer (added to the vocabulary when missing)."""

    bos_token: str | None = Field(None, description="Beginning-of-sequence token.")
    eos_token: str | None = Field(None, description="End-of-sequence token.")
    pad_token: str | None = Field(None, description="Padding token.")
    unk_token: str | None = Field(None, description="Unknown token.")


class TrlConfig(StrictModel):
    """``trl:`` settings of the TRL trainer that ``rl:`` selects (unset keys keep TRL's defaults)."""

    beta: float | None = Field(
        None, ge=0.0, description="KL / preference strength (DPO, KTO, ORPO, GRPO)."
    )
    loss_type: str | None = Field(
        None, description="TRL loss variant, e.g. `sigmoid`, `ipo`, `dapo`."
    )
    num_generations: int | None = Field(
        None, ge=2, description="GRPO: completions sampled per prompt."
    )
    max_completion_length: int | None = Field(
        None, gt=0, description="GRPO and ORPO: longest completion in tokens."
    )
    temperature: float | None = Field(None, gt=0.0, description="GRPO: sampling temperature.")
    reward_funcs: list[str] = Field(
        default_factory=list,
        description="GRPO: reward functions by dotted path (`my_pkg.rewards:exact_match`) or by "
        "name (TRL's built-in rewards, and those plugins register).",
    )
    reward_weights: list[float] | None = Field(
        None, description="GRPO: one weight per reward function, in order."
    )
    use_vllm: bool = Field(
        False, description="GRPO: generate with a vLLM server (`trl vllm-serve`)."
    )
    vllm_server_host: str = Field("127.0.0.1", description="GRPO: host of the vLLM server.")
    vllm_server_port: int = Field(8000, gt=0, description="GRPO: port of the vLLM server.")
    vllm_server_timeout: float = Field(
        240.0, gt=0, description="GRPO: seconds to wait for the vLLM server."
    )
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other field of the TRL config class, passed as is.",
    )


class FSDPConfig(StrictModel):
    """The ``fsdp_config:`` block: PyTorch FSDP2 through accelerate (one process per GPU).

    Keys may carry transformers' and Axolotl's ``fsdp_`` prefix (``fsdp_offload_params``).
    """

    version: Literal[2] = Field(2, description="FSDP version; only FSDP2 (`fully_shard`).")
    reshard_after_forward: bool = Field(
        True,
        description="Free the gathered parameters after each layer's forward (full shard, ZeRO-3 "
        "like); `false` keeps them until the backward (less communication, more memory).",
    )
    auto_wrap_policy: Literal["TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP"] = Field(
        "TRANSFORMER_BASED_WRAP", description="How the model is split into FSDP units."
    )
    transformer_layer_cls_to_wrap: list[str] | None = Field(
        None,
        description="Layer classes that become FSDP units (`LlamaDecoderLayer`); default: the "
        "model's `_no_split_modules`.",
    )
    min_num_params: int = Field(
        0, ge=0, description="With `SIZE_BASED_WRAP`: parameters per FSDP unit."
    )
    activation_checkpointing: bool = Field(
        False, description="Recompute each wrapped layer's activations in the backward pass."
    )
    cpu_offload: bool = Field(
        False, description="Keep parameters, gradients and optimizer states in CPU memory."
    )
    state_dict_type: Literal["SHARDED_STATE_DICT", "FULL_STATE_DICT"] = Field(
        "SHARDED_STATE_DICT",
        description="Checkpoint format: sharded (each rank writes its part; resumable on another "
        "number of GPUs) or full (gathered on rank 0). The final model is always saved full.",
    )
    cpu_ram_efficient_loading: bool = Field(
        False, description="Load the weights on rank 0 only and broadcast them (large models)."
    )

    @classmethod
    def field_name(cls, key: str) -> str:
        """The field that ``key`` sets: Axolotl's ``fsdp_``-prefixed names are accepted."""
        name = key.removeprefix("fsdp_")
        name = "cpu_offload" if name == "offload_params" else name
        return name if name in cls.model_fields else key  # unknown: reported as the user wrote it

    @model_validator(mode="before")
    @classmethod
    def _accept_prefixed_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        renamed: dict[str, Any] = {}
        written: dict[str, str] = {}
        for key, value in data.items():
            name = cls.field_name(key)
            if name in written:
                raise ValueError(f"{written[name]} and {key} set the same key; keep one")
            written[name] = key
            if name == "transformer_layer_cls_to_wrap" and isinstance(value, str):
                value = [value]
            renamed[name] = value
        return renamed


class CoreConfig(StrictModel):
    """Keys of the core: model, data, adapter, training and output."""

    # ---- plugins
    plugins: list[str] = Field(
        default_factory=list,
        description="Plugins to activate: entry-point names (`liger`), dotted paths of local "
        "plugins (`my_pkg.plugin:MyPlugin`) or Axolotl plugin paths.",
    )

    # ---- model
    base_model: str | None = Field(
        None, description="Model to fine-tune: a local path or a hub id."
    )
    base_model_config: str | None = Field(
        None, description="Path or hub id of the model config, when it differs from `base_model`."
    )
    tokenizer_config: str | None = Field(
        None, description="Path or hub id of the tokenizer; default: `base_model`."
    )
    model_init: Literal["pretrained", "random"] = Field(
        "pretrained",
        description="`random` builds the model from its config with random weights "
        "(pretraining, tests).",
    )
    trust_remote_code: bool = Field(False, description="Allow custom modelling code from the hub.")
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Dtype the weights are loaded in."
    )
    bf16: bool | Literal["auto"] = Field(
        "auto", description="Train in bfloat16 mixed precision; `auto` uses it where supported."
    )
    fp16: bool = Field(False, description="Train in float16 mixed precision.")
    tf32: bool = Field(False, description="Allow TF32 matmuls on Ampere and newer GPUs.")
    attn_implementation: str | None = Field(
        None, description="`eager`, `sdpa`, `flash_attention_2`, `flex_attention`, ..."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward.")
    special_tokens: SpecialTokens = Field(
        default_factory=SpecialTokens, description="Special tokens to set on the tokenizer."
    )
    tokens: list[str] = Field(
        default_factory=list, description="Extra tokens added to the vocabulary."
    )
    chat_template: str | None = Field(
        None, description="Chat template for the tokenizer: a Jinja string or a named template."
    )

    # ---- adapter
    adapter: Literal["lora", "qlora"] | None = Field(
        None, description="Train an adapter instead of the full model."
    )
    lora_r: int = Field(8, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(16, gt=0, description="LoRA scaling numerator.")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on LoRA inputs.")
    lora_target_modules: list[str] | None = Field(
        None, description="Module names to adapt (e.g. `q_proj`)."
    )
    lora_target_linear: bool = Field(False, description="Adapt every linear layer.")
    lora_target_parameters: list[str] | None = Field(
        None,
        description="Parameters to adapt that are not in a linear layer (peft `target_parameters`), "
        "e.g. `mlp.experts.gate_up_proj` and `mlp.experts.down_proj` for MoE experts.",
    )
    lora_modules_to_save: list[str] = Field(
        default_factory=list, description="Modules trained in full and saved with the adapter."
    )
    load_in_4bit: bool = Field(False, description="Load weights in 4 bit (QLoRA, GPU only).")
    load_in_8bit: bool = Field(False, description="Load weights in 8 bit (GPU only).")
    unfrozen_parameters: list[str] | None = Field(
        None, description="Regexes of parameter names to train; all others are frozen."
    )

    # ---- data
    datasets: list[DatasetConfig] = Field(
        default_factory=list, description="Training datasets, mixed together."
    )
    test_datasets: list[DatasetConfig] = Field(
        default_factory=list, description="Evaluation datasets (instead of `val_set_size`)."
    )
    val_set_size: float = Field(
        0.0, ge=0.0, description="Fraction (< 1) or number of rows held out for evaluation."
    )
    shuffle: bool = Field(True, description="Shuffle the mixed training data.")
    sequence_len: int = Field(2048, gt=0, description="Maximum tokens per example.")
    excess_length_strategy: Literal["drop", "truncate", "error"] = Field(
        "drop", description="What to do with examples longer than `sequence_len`."
    )
    sample_packing: bool = Field(
        False, description="Pack several examples into each `sequence_len` row."
    )
    train_on_inputs: bool = Field(
        False, description="Also compute loss on the prompt of `alpaca` rows."
    )
    strict: bool = Field(False, description="Rows that do not fit their type are errors.")
    dataset_prepared_path: str | None = Field(
        None,
        description="Folder of the tokenization cache; default `$FTCORE_CACHE_DIR/prepared` "
        "(`~/.cache/ftcore/prepared`).",
    )
    dataset_processes: int | None = Field(
        None, gt=0, description="Processes used to tokenize; default: all cores."
    )

    # ---- training
    output_dir: str = Field("./outputs", description="Where checkpoints and the model go.")
    seed: int = Field(42, description="Random seed for data order and initialization.")
    micro_batch_size: int = Field(1, gt=0, description="Examples per device per step.")
    eval_batch_size: int | None = Field(None, gt=0, description="Default: `micro_batch_size`.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches per update.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the training data.")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many updates.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    optimizer: str = Field("adamw_torch", description="A `transformers` optimizer name.")
    lr_scheduler: str = Field("cosine", description="A `transformers` scheduler name.")
    warmup_steps: int | None = Field(None, ge=0, description="Linear warmup updates.")
    warmup_ratio: float | None = Field(
        None, ge=0.0, le=1.0, description="Warmup as a fraction of all updates."
    )
    weight_decay: float = Field(0.0, ge=0.0, description="Decoupled weight decay.")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="Adam(W) first-moment decay.")
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam(W) second-moment decay.")
    adam_epsilon: float = Field(1e-8, gt=0.0, description="Adam(W) epsilon.")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Gradient clipping norm (0: off).")
    logging_steps: int = Field(1, gt=0, description="Log every N updates.")
    report_to: list[str] = Field(
        default_factory=list,
        description="transformers trackers to log to (tensorboard, wandb, mlflow, ...); each reads "
        "its own settings from its environment variables. Tracker plugins (swanlab) need nothing here.",
    )
    eval_steps: int | None = Field(None, gt=0, description="Evaluate every N updates.")
    evals_per_epoch: int | None = Field(None, gt=0, description="Evaluations per epoch.")
    save_steps: int | None = Field(None, gt=0, description="Save a checkpoint every N updates.")
    saves_per_epoch: int | None = Field(None, gt=0, description="Checkpoints per epoch.")
    save_total_limit: int | None = Field(None, gt=0, description="Keep at most N checkpoints.")
    resume_from_checkpoint: str | None = Field(
        None, description="A checkpoint folder, or `auto` for the newest complete one."
    )
    overwrite_output_dir: bool = Field(
        False,
        description="Start a new run in an output_dir that holds an earlier run's checkpoints: "
        "they are deleted first (without it, such a run is refused).",
    )
    dataloader_num_workers: int = Field(0, ge=0, description="Data loader worker processes.")

    # ---- more than one GPU
    fsdp_config: FSDPConfig | None = Field(
        None,
        description="Shard the model with FSDP2 across the processes of the run (`ftcore train "
        "--nproc N`); see docs/multi-gpu.md.",
    )
    deepspeed: str | dict[str, Any] | None = Field(
        None,
        description="DeepSpeed ZeRO: a preset (`zero1`, `zero2`, `zero3`, `zero3_offload`), a "
        "JSON file, or the config inline; needs the `deepspeed` package.",
    )

    # ---- preference and RL training
    rl: Literal["dpo", "kto", "orpo", "grpo"] | None = Field(
        None, description="Train with a TRL trainer instead of supervised fine-tuning."
    )
    trl: TrlConfig = Field(default_factory=TrlConfig, description="Settings of the TRL trainer.")

    # ---- hub and tracking
    hf_token: str | None = Field(
        None,
        description="Hub token for gated models and private datasets (redacted whenever printed).",
    )

    @field_validator("plugins")
    @classmethod
    def _no_empty_plugin_names(cls, value: list[str]) -> list[str]:
        if any(not str(name).strip() for name in value):
            raise ValueError("plugin names must not be empty")
        return value


def field_names(model: type[BaseModel]) -> set[str]:
    """Every key a model accepts, aliases included."""
    names = set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
    return names


def describe_default(info: Any) -> str:
    """The default of a field, as the reference docs show it."""
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        try:
            value = info.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(block)"
        return repr(value)
    return repr(info.default)
