"""Hook specifications: the contract between ftcore and its plugins.

Every hook is named ``ftcore_<phase>_<what>`` and runs on every rank. Plugins implement them with
``@ftcore.hookimpl``; a plugin implements only the hooks it needs. Hooks run in the order the
``plugins:`` list of the config names the plugins.

How results combine is part of each contract:

* **all** -- every implementation runs, results are ignored.
* **collected** -- every implementation runs, the non-None results are gathered.
* **firstresult** -- implementations run until one returns non-None, which wins.
* **at most one plugin** -- like firstresult, but two plugins that both answer are an error that names
  both, never a silent "first wins".

Pipeline code never calls these through ``pm.hook``: it goes through :class:`ftcore.host.PluginHost`,
which enforces the combination rules above.

Nothing here imports torch; the annotations are strings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click
    from pydantic import BaseModel

    from ftcore.claims import Claim
    from ftcore.config import FtcoreConfig

hookspec = pluggy.HookspecMarker("ftcore")


# --------------------------------------------------------------------------------------------- config


@hookspec
def ftcore_config_schema() -> type[BaseModel] | None:
    """Declare the config keys this plugin adds.

    Called once per run, before the config is validated, with no arguments (no config exists yet).

    :return: a pydantic model whose fields become top-level config keys (flat keys such as
        ``liger_rope`` or a nested block such as ``diffusion:``), or ``None`` for no keys.
        Collected. A key defined by the core and a plugin, or by two plugins, is a config error
        naming both.
    """


@hookspec
def ftcore_validate_config(cfg: FtcoreConfig) -> list[str | tuple[str, str]] | None:
    """Report problems that a schema alone cannot see (cross-field, cross-plugin).

    Called once, after every key passed its schema, on every rank.

    :param cfg: the validated config, core and plugin keys.
    :return: a list of problems, each a message or a ``(key path, message)`` pair, or ``None``.
        Collected: every problem of every plugin is reported in one block with the schema problems.
    """


@hookspec
def ftcore_configure(cfg: FtcoreConfig) -> None:
    """Adjust the validated config before any work starts (e.g. set ``unfrozen_parameters``).

    Called once, after validation succeeded, on every rank. Mutate ``cfg`` in place.

    :param cfg: the validated config.
    :return: nothing. All implementations run, in ``plugins:`` order.
    """


@hookspec
def ftcore_model_claims(cfg: FtcoreConfig) -> list[Claim] | None:
    """Declare which parts of the model this plugin replaces with this config.

    Called once, during validation. Parts are listed in :class:`ftcore.claims.ModelPart` (the loss head,
    the MoE experts, RMSNorm, RoPE, the MLP activation, attention).

    :param cfg: the validated config.
    :return: a list of :class:`ftcore.claims.Claim`, or ``None``. Collected; two active plugins that
        claim the same part are a config error naming both, never a silent "last patch wins".
    """


# ------------------------------------------------------------------------------------------------ cli


@hookspec
def ftcore_cli_commands() -> dict[str, str | click.Command] | None:
    """Contribute subcommands to the ``ftcore`` CLI (e.g. ``lm-eval``, ``spectrum``).

    Called when the CLI lists or resolves commands, for every installed plugin that is not blocked,
    whether or not a config activates it.

    :return: a mapping from command name to a ``"module:attribute"`` import path of a
        ``click.Command`` (imported only when the command runs, so ``ftcore --help`` stays fast)
        or to the command itself. Collected; a name taken by the core or by another plugin is
        reported and the plugin's command is skipped.
    """


# ----------------------------------------------------------------------------------------------- data


@hookspec
def ftcore_dataset_strategies() -> dict[str, Any] | None:
    """Contribute dataset ``type:`` strategies.

    Called once, before datasets are prepared (and during validation, to check ``type:`` names).

    :return: a mapping from type name to a strategy object, or ``None``. Collected; a name already
        taken by the core or another plugin is a config error naming both. A strategy has
        ``tokenize(row, tokenizer, ds, cfg) -> {"input_ids", "labels"}`` and raises
        ``ftcore.data.strategies.RowError`` for a row that does not fit; if it reads config keys,
        it defines ``fingerprint(cfg) -> str`` over them so the tokenization cache notices changes.
    """


@hookspec(firstresult=True)
def ftcore_load_datasets(cfg: FtcoreConfig, tokenizer: Any) -> Any | None:
    """Load and prepare the train/eval datasets instead of the core loader.

    Called once, after the tokenizer is loaded and before the model is loaded.

    :param cfg: the validated config.
    :param tokenizer: the loaded tokenizer.
    :return: the prepared datasets, or ``None`` to let the core load them. At most one plugin:
        two plugins returning datasets is an error.
    """


@hookspec(firstresult=True)
def ftcore_data_collator(cfg: FtcoreConfig, tokenizer: Any, is_eval: bool) -> Any | None:
    """Provide the data collator for training (``is_eval=False``) or evaluation (``is_eval=True``).

    Called twice while the trainer is built.

    :return: a collator callable, or ``None`` for the core's collator. firstresult.
    """


# ---------------------------------------------------------------------------------------------- model


@hookspec
def ftcore_pre_model_load(cfg: FtcoreConfig) -> None:
    """Patch libraries before the model is instantiated (kernel patching, experts registration).

    Called once, before ``from_pretrained``/``from_config``, on every rank.

    :return: nothing. All implementations run.
    """


@hookspec
def ftcore_post_model_build(cfg: FtcoreConfig, model: Any) -> None:
    """Act on the freshly built model, before any adapter is attached.

    :param model: the ``transformers`` model.
    :return: nothing. All implementations run.
    """


@hookspec
def ftcore_pre_adapter_load(cfg: FtcoreConfig, model: Any) -> None:
    """Act on the model just before the LoRA/QLoRA adapter is attached (only when ``adapter`` is set).

    :return: nothing. All implementations run.
    """


@hookspec
def ftcore_post_adapter_load(cfg: FtcoreConfig, model: Any) -> None:
    """Act on the model just after the adapter is attached (only when ``adapter`` is set).

    :param model: the ``peft`` model.
    :return: nothing. All implementations run.
    """


@hookspec
def ftcore_post_model_load(cfg: FtcoreConfig, model: Any, tokenizer: Any) -> None:
    """Act on the final model (adapters attached, freezing applied) before the trainer is built.

    :return: nothing. All implementations run.
    """


# -------------------------------------------------------------------------------------------- trainer


@hookspec(firstresult=True)
def ftcore_trainer_class(cfg: FtcoreConfig) -> type | None:
    """Choose the Trainer class for this run.

    Called once, after the model is loaded and before the trainer is built, on every rank.

    :param cfg: the validated config, core and plugin keys.
    :return: a ``transformers.Trainer`` subclass, or ``None`` to leave the choice to others.
        At most one plugin: two active plugins that both return a class are an error.
    """


@hookspec
def ftcore_training_args(cfg: FtcoreConfig) -> dict[str, Any] | None:
    """Contribute keyword arguments to the ``TrainingArguments`` of this run.

    Called once, while the trainer is built.

    :return: a dict of argument names to values, or ``None``. Collected; two plugins setting the
        same argument to different values is an error naming both.
    """


@hookspec(firstresult=True)
def ftcore_compute_loss(
    cfg: FtcoreConfig, model: Any, inputs: dict[str, Any], trainer: Any
) -> Any | None:
    """Compute the training loss instead of the model's own loss (knowledge distillation, diffusion).

    Called on every training and evaluation step.

    :param inputs: the collated batch.
    :param trainer: the running trainer.
    :return: the mean loss of this micro-batch (a scalar tensor), or ``None`` for the default loss;
        ftcore scales it for gradient accumulation. firstresult.
    """


@hookspec(firstresult=True)
def ftcore_create_optimizer(cfg: FtcoreConfig, model: Any, trainer: Any) -> Any | None:
    """Build the optimizer instead of the trainer's default.

    Called once, when the trainer creates its optimizer.

    :return: a ``torch.optim.Optimizer``, or ``None``. firstresult.
    """


@hookspec(firstresult=True)
def ftcore_create_lr_scheduler(
    cfg: FtcoreConfig, trainer: Any, optimizer: Any, num_training_steps: int
) -> Any | None:
    """Build the learning-rate scheduler instead of the trainer's default.

    Called once, when the trainer creates its scheduler.

    :return: a ``torch.optim.lr_scheduler.LRScheduler``, or ``None``. firstresult.
    """


@hookspec
def ftcore_callbacks(cfg: FtcoreConfig, model: Any) -> list[Any] | None:
    """Contribute ``transformers.TrainerCallback`` objects to the trainer.

    Called once, just before the trainer is built.

    :return: a list of callbacks, or ``None``. Collected, in ``plugins:`` order.
    """


@hookspec
def ftcore_post_trainer_create(cfg: FtcoreConfig, trainer: Any) -> None:
    """Act on the built trainer before training starts.

    :return: nothing. All implementations run.
    """


# ------------------------------------------------------------------------------------------------- rl


@hookspec
def ftcore_reward_functions(cfg: FtcoreConfig) -> list[Any] | None:
    """Contribute reward functions to GRPO-style trainers.

    Called once, at the start of an RL run's ``ftcore train``: before the data is read and
    before ``ftcore_pre_model_load``, so that a missing function or a wrong count of
    ``trl.reward_weights`` is an error before anything is loaded. A function may therefore
    need state that ``ftcore_pre_model_load`` sets up only when it is called, not when returned.

    :return: a list of reward callables in TRL's signature, or ``None``. Collected.
    """


@hookspec
def ftcore_on_rollouts(
    cfg: FtcoreConfig,
    trainer: Any,
    prompts: list[Any],
    completions: list[Any],
    rewards: dict[str, list[float]],
    advantages: Any,
) -> None:
    """Observe scored rollouts (logging completion tables, curriculum bookkeeping).

    Called after every scored GRPO generation batch, on rank 0 only, with rank 0's share of the
    batch. A failure here is logged and training goes on.

    :param rewards: reward name to one value per completion.
    :return: nothing. All implementations run.
    """


@hookspec
def ftcore_log_samples(
    cfg: FtcoreConfig, trainer: Any, name: str, rows: list[dict[str, str]]
) -> None:
    """Record text samples a plugin produced during training (generations, decoded examples).

    Called on the main process by ``ftcore.tracking.log_samples``, after the core appended the rows
    to ``<output_dir>/samples/<name>.jsonl`` and sent them to the transformers trackers in
    ``report_to`` (TensorBoard, Weights & Biases, MLflow). Tracker plugins implement it to record
    the rows in their own run. A failure here is logged and training goes on.

    :param name: what the samples are, e.g. ``"diffusion_samples"``; one table per name.
    :param rows: one dict per sample, column name to text; every row has the same columns.
        The step is ``trainer.state.global_step``.
    :return: nothing. All implementations run.
    """


# ------------------------------------------------------------------------------------------------ end


@hookspec(firstresult=True)
def ftcore_save_model(cfg: FtcoreConfig, trainer: Any, output_dir: str) -> bool | None:
    """Save the trained model in place of the core (e.g. a compressed save).

    Called once after training.

    :return: ``True`` when the plugin saved the model, ``None`` to let the core save it. firstresult.
    """


@hookspec
def ftcore_post_train(cfg: FtcoreConfig, trainer: Any) -> None:
    """Act once training and saving are done, with the trainer still in memory.

    Called exactly once per run.

    :return: nothing. All implementations run.
    """


@hookspec
def ftcore_on_train_error(cfg: FtcoreConfig, error: BaseException) -> None:
    """Act when the run fails: training, saving or a hook raised (notify, close a tracker run).

    Called once, from ``ftcore train``, before the error propagates, on every rank. An exception
    raised here is logged and does not replace the original error.

    :param error: the exception that stops the run.
    :return: nothing. All implementations run.
    """


@hookspec
def ftcore_post_train_unload(cfg: FtcoreConfig) -> None:
    """Act after the model and trainer were freed (run evaluations, stop servers).

    Called exactly once per run, last.

    :return: nothing. All implementations run.
    """


# ------------------------------------------------------------------------------------------ inference


@hookspec(firstresult=True)
def ftcore_inference_handler(cfg: FtcoreConfig, model: Any, tokenizer: Any) -> Any | None:
    """Replace the decoding loop of ``ftcore inference`` (e.g. diffusion decoding).

    Called once when ``ftcore inference`` starts.

    :return: a callable ``(prompt: str) -> str``, or ``None`` for ``model.generate``. firstresult.
    """
