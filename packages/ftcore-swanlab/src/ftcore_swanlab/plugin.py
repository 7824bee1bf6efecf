"""Hook implementations of ftcore-swanlab. Only rank 0 talks to SwanLab and to Lark.

SwanLab 0.10 silently drops ``api_key``, ``web_host``, ``api_host`` and ``log_model`` when they are
passed to ``swanlab.init``; the key goes through ``swanlab.login`` and the hosts through the
``SWANLAB_API_HOST``/``SWANLAB_WEB_HOST`` variables instead, before the run starts.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ftcore import hookimpl
from ftcore_swanlab.lark import url_problem

log = logging.getLogger("ftcore")

RL_TRAINERS = ("dpo", "kto", "orpo", "grpo")
OTHER_TRACKERS = ("wandb", "mlflow", "comet_ml")


def _active(cfg: Any) -> bool:
    from ftcore.dist import is_main_process

    return cfg.use_swanlab and cfg.swanlab_mode != "disabled" and is_main_process()


def _lark_settings(cfg: Any) -> tuple[str | None, str | None]:
    url = cfg.swanlab_lark_webhook_url or os.environ.get("SWANLAB_LARK_WEBHOOK_URL")
    secret = cfg.swanlab_lark_secret or os.environ.get("SWANLAB_LARK_SECRET")
    return url, secret


class SwanLabPlugin:
    """One tracked run per process: SwanLab run, Lark notifier, completion buffer."""

    def __init__(self) -> None:
        self.notifier: Any = None
        self.buffer: Any = None
        self.run_name = "ftcore run"

    # ------------------------------------------------------------------------------------- config

    @hookimpl
    def ftcore_config_schema(self):
        """Add ``use_swanlab`` and the ``swanlab_*`` keys."""
        from ftcore_swanlab.config import SwanLabArgs

        return SwanLabArgs

    @hookimpl
    def ftcore_validate_config(self, cfg):
        """A tracked run needs a project with a name; a Lark webhook needs an http(s) address."""
        if not cfg.use_swanlab:
            return None
        problems = []
        if cfg.swanlab_project is None:
            problems.append(
                ("swanlab_project", "required when use_swanlab is true: name the project")
            )
        elif not cfg.swanlab_project.strip():
            problems.append(("swanlab_project", "must not be empty"))
        if cfg.swanlab_lark_webhook_url and (problem := url_problem(cfg.swanlab_lark_webhook_url)):
            problems.append(("swanlab_lark_webhook_url", problem))
        if cfg.swanlab_mode == "local" and importlib.util.find_spec("swanboard") is None:
            problems.append(
                (
                    "swanlab_mode",
                    "local needs SwanLab's dashboard: pip install 'swanlab[dashboard]', or use "
                    "offline",
                )
            )
        return problems or None

    @hookimpl
    def ftcore_configure(self, cfg):
        """Warn about settings that will not work as the user probably expects."""
        if not cfg.use_swanlab or cfg.swanlab_mode == "disabled":
            return
        has_key = cfg.swanlab_api_key or os.environ.get("SWANLAB_API_KEY")
        if cfg.swanlab_mode == "cloud" and not has_key:
            log.warning(
                "ftcore: swanlab_mode is cloud but no API key is set (swanlab_api_key or "
                "SWANLAB_API_KEY); this works only after `swanlab login`, else use swanlab_mode: "
                "offline or local"
            )
        url, secret = _lark_settings(cfg)
        if url and not secret:
            log.warning(
                "ftcore: the Lark webhook has no secret (swanlab_lark_secret or "
                "SWANLAB_LARK_SECRET): anyone with its URL can post to the chat; enable signing"
            )

    # ------------------------------------------------------------------------------------ trainer

    @hookimpl
    def ftcore_callbacks(self, cfg, model):
        """Metrics through SwanLab's own transformers callback (rank 0), and completion tables."""
        if not _active(cfg):
            return None
        from swanlab.integration.transformers import SwanLabCallback

        callbacks = [SwanLabCallback(log_config=True)]
        if cfg.swanlab_log_completions and cfg.rl in RL_TRAINERS:
            from ftcore_swanlab.callbacks import CompletionTableCallback
            from ftcore_swanlab.completions import CompletionBuffer

            self.buffer = CompletionBuffer(cfg.swanlab_completion_max_buffer)
            callbacks.append(
                CompletionTableCallback(self.buffer, cfg.swanlab_completion_log_interval)
            )
        return callbacks

    @hookimpl
    def ftcore_post_trainer_create(self, cfg, trainer):
        """Start the SwanLab run (rank 0) with the redacted config, and announce it on Lark."""
        if not _active(cfg):
            return
        self._warn_about_other_trackers(trainer)
        self._start_run(cfg)
        url, secret = _lark_settings(cfg)
        if url:
            from ftcore_swanlab.lark import LarkNotifier

            self.notifier = LarkNotifier(url, secret)
            self.notifier.send(f"ftcore: training started: {self.run_name}")

    def _warn_about_other_trackers(self, trainer: Any) -> None:
        report_to = getattr(trainer.args, "report_to", None) or []
        others = [name for name in report_to if name in OTHER_TRACKERS]
        if len(others) >= 2:
            log.warning(
                "ftcore: %d experiment trackers at once (swanlab, %s): each adds overhead to every "
                "logging step; keep one or two",
                len(others) + 1,
                ", ".join(others),
            )
        elif others:
            log.warning("ftcore: two experiment trackers at once (swanlab, %s)", others[0])

    def _start_run(self, cfg: Any) -> None:
        import swanlab

        from ftcore.config.redact import redact, redact_argv
        from ftcore.errors import FtcoreError

        if cfg.swanlab_api_host:
            os.environ["SWANLAB_API_HOST"] = cfg.swanlab_api_host
        if cfg.swanlab_web_host:
            os.environ["SWANLAB_WEB_HOST"] = cfg.swanlab_web_host
        os.environ.setdefault("SWANLAB_INTERACTIVE", "false")
        # set but empty, SwanLab would take it over the config's mode and refuse it
        if os.environ.get("SWANLAB_MODE") == "":
            del os.environ["SWANLAB_MODE"]
        if cfg.swanlab_mode == "cloud" and cfg.swanlab_api_key:
            try:
                swanlab.login(api_key=cfg.swanlab_api_key, host=cfg.swanlab_api_host)
            except Exception as exc:
                raise FtcoreError(
                    f"swanlab: login failed ({type(exc).__name__}); check swanlab_api_key and "
                    "swanlab_api_host"
                ) from exc
        log_dir = os.environ.get("SWANLAB_LOG_DIR") or str(Path(cfg.output_dir) / "swanlog")
        self.run_name = cfg.swanlab_experiment_name or Path(cfg.output_dir).name
        argv = sys.argv
        sys.argv = redact_argv(argv)  # SwanLab records the command line: no secret overrides in it
        try:
            swanlab.init(
                project=cfg.swanlab_project,
                experiment_name=cfg.swanlab_experiment_name,
                description=cfg.swanlab_description,
                workspace=cfg.swanlab_workspace,
                mode="online" if cfg.swanlab_mode == "cloud" else cfg.swanlab_mode,
                log_dir=log_dir,
                config={"ftcore": redact(cfg.model_dump(mode="json"))},
            )
        except Exception as exc:
            # a file error names its file; requests' errors are OSErrors too, without one
            if isinstance(exc, OSError) and getattr(exc, "filename", None):
                raise FtcoreError(
                    f"swanlab: cannot write its logs in {log_dir} ({type(exc).__name__}: {exc}); "
                    "check SWANLAB_LOG_DIR or output_dir"
                ) from exc
            raise FtcoreError(
                f"swanlab: cannot start the run ({type(exc).__name__}: {exc}); check "
                "swanlab_api_key, swanlab_api_host, or use swanlab_mode: offline"
            ) from exc
        finally:
            sys.argv = argv

    # ------------------------------------------------------------------------------------- rl

    @hookimpl
    def ftcore_on_rollouts(self, cfg, trainer, prompts, completions, rewards, advantages):
        """Buffer scored GRPO completions for the next completion table."""
        if self.buffer is not None:
            self.buffer.add_rollouts(
                trainer.state.global_step, prompts, completions, rewards, advantages
            )

    @hookimpl
    def ftcore_log_samples(self, cfg, trainer, name, rows):
        """Log a plugin's text samples (e.g. diffusion generations) as a table of this step."""
        if not _active(cfg):
            return
        from ftcore_swanlab.completions import log_rows

        log_rows(name, rows, trainer.state.global_step)

    # ------------------------------------------------------------------------------------ end

    @hookimpl
    def ftcore_post_train(self, cfg, trainer):
        """Log the run manifest and the last completions, finish the run, announce completion."""
        if not _active(cfg):
            return
        import swanlab

        manifest = Path(cfg.output_dir) / "ftcore_run.json"
        if manifest.is_file() and swanlab.has_run():
            swanlab.config.update({"ftcore_manifest": json.loads(manifest.read_text())})
        if self.buffer is not None:
            self.buffer.flush(trainer.state.global_step)
        loss = next(
            (e["train_loss"] for e in reversed(trainer.state.log_history) if "train_loss" in e),
            None,
        )
        swanlab.finish()
        if self.notifier is not None:
            summary = f", train_loss {loss:.4f}" if loss is not None else ""
            self.notifier.send(
                f"ftcore: training finished: {self.run_name} ({trainer.state.global_step} steps{summary})"
            )

    @hookimpl
    def ftcore_on_train_error(self, cfg, error):
        """Mark the SwanLab run crashed and tell Lark what went wrong."""
        if not _active(cfg):
            return
        import swanlab

        message = f"{type(error).__name__}: {error}"
        if swanlab.has_run():
            swanlab.finish(state="crashed", error=message)
        if self.notifier is not None:
            self.notifier.send(f"ftcore: training failed: {self.run_name}: {message}")
