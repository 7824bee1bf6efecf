"""Optimizer, scheduler and tracker names of ``transformers`` (checked without importing it), and
the names other fine-tuning tools give ftcore's keys.

``tests/test_names.py`` fails when the installed transformers adds or drops a name.
"""

OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor",
    "adamw_anyprecision", "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad",
    "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit",
    "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
    "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor",
    "galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo",
    "adalomo", "grokadamw", "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd",
    "apollo_adamw", "apollo_adamw_layerwise", "stable_adamw",
)  # fmt: skip

SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
    "warmup_stable_decay", "greedy",
)  # fmt: skip

TRACKERS = (
    "azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "kubeflow",
    "mlflow", "neptune", "swanlab", "tensorboard", "trackio", "wandb",
)  # fmt: skip

#: Keys of transformers' TrainingArguments, TRL, Axolotl and LLaMA-Factory that spelling alone does
#: not lead to ftcore's name: an unknown key found here is answered with what ftcore calls it.
OTHER_TOOLS_KEYS = {
    "model": "base_model",
    "model_name": "base_model",
    "model_name_or_path": "base_model",
    "model_id": "base_model",
    "lr": "learning_rate",
    "batch_size": "micro_batch_size",
    "train_batch_size": "micro_batch_size",
    "per_device_train_batch_size": "micro_batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "epochs": "num_epochs",
    "num_train_epochs": "num_epochs",
    "max_seq_length": "sequence_len",
    "max_seq_len": "sequence_len",
    "max_length": "sequence_len",
    "seq_len": "sequence_len",
    "cutoff_len": "sequence_len",
    "optim": "optimizer",
    "lr_scheduler_type": "lr_scheduler",
    "flash_attention": "attn_implementation: flash_attention_2",
    "sdp_attention": "attn_implementation: sdpa",
    "flex_attention": "attn_implementation: flex_attention",
    "wandb_project": "report_to: [wandb]",  # the project comes from WANDB_PROJECT
}
