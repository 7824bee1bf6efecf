"""Hook implementations of ftcore-kd (torch is imported only inside hooks)."""

from __future__ import annotations

import logging
from typing import Any

from ftcore import hookimpl

log = logging.getLogger("ftcore")

STRATEGY_NAMES = ("kd.chat_template", "axolotl.integrations.kd.chat_template")


class KDPlugin:
    """Distillation from a teacher's top-k logprobs: data, collator, loss, online teachers, CLI."""

    def __init__(self) -> None:
        self.teacher: Any = None
        self.softcap: float | None = None

    @hookimpl
    def ftcore_config_schema(self):
        """Add the ``kd_*`` keys."""
        from ftcore_kd.config import KDArgs

        return KDArgs

    @hookimpl
    def ftcore_model_claims(self, cfg):
        """The distillation loss replaces the causal-LM loss."""
        if not cfg.kd_trainer:
            return None
        from ftcore.claims import Claim, ModelPart

        return [Claim(ModelPart.LOSS_HEAD, key="kd_trainer")]

    @hookimpl
    def ftcore_validate_config(self, cfg):
        """One teacher source; online teachers need ``kd_top_k``; no RL trainer."""
        problems = []
        online = cfg.kd_teacher_model or cfg.kd_online_server_base_url
        if cfg.kd_teacher_model and cfg.kd_online_server_base_url:
            problems.append(
                ("kd_online_server_base_url", "choose one teacher: this or kd_teacher_model")
            )
        if online and not cfg.kd_top_k:
            problems.append(
                ("kd_top_k", "required with an online teacher (how many tokens to keep)")
            )
        for key in ("datasets", "test_datasets"):
            offline = [ds.type in STRATEGY_NAMES for ds in getattr(cfg, key)]
            if cfg.kd_trainer and not online and not all(offline):
                problems.append(
                    (key, "offline KD reads teacher logprobs from datasets of type "
                     "kd.chat_template; use it for every dataset, or set kd_teacher_model or "
                     "kd_online_server_base_url")
                )  # fmt: skip
        if cfg.rl:
            problems.append(("rl", f"KD has no {cfg.rl} variant; remove rl"))
        if cfg.kd_trainer and cfg.kd_alpha == 0 and cfg.kd_ce_alpha == 0:
            problems.append(("kd_alpha", "kd_alpha and kd_ce_alpha are both 0: nothing is trained"))
        return problems

    @hookimpl
    def ftcore_configure(self, cfg):
        """Warn where the divergence is not smallest at the teacher's distribution."""
        if cfg.kd_trainer and cfg.kd_beta == 1 and not cfg.kd_normalize_topk:
            log.warning(
                "ftcore: kd_beta: 1 (reverse KL) without kd_normalize_topk sums p*log(p/q) over "
                "the teacher's top-k tokens only, which is smallest at p = q/e, not at p = q: the "
                "student is pulled below the teacher; set kd_normalize_topk: true"
            )

    @hookimpl
    def ftcore_dataset_strategies(self):
        """``kd.chat_template`` (Axolotl's ``axolotl.integrations.kd.chat_template`` too)."""
        from ftcore_kd.data import KDChatTemplate

        strategy = KDChatTemplate()
        return {name: strategy for name in STRATEGY_NAMES}

    @hookimpl
    def ftcore_data_collator(self, cfg, tokenizer, is_eval):
        """The core's batch plus the teacher's top-k, padded."""
        from ftcore.data.packing import PackedCollator, PaddingCollator
        from ftcore_kd.collator import KDCollator

        base = (PackedCollator if cfg.sample_packing else PaddingCollator)(tokenizer.pad_token_id)
        return KDCollator(base)

    @hookimpl
    def ftcore_post_trainer_create(self, cfg, trainer):
        """Warn (rank 0) when ``kd_top_k`` asks for more tokens than the dataset's logprobs hold."""
        from ftcore.dist import is_main_process
        from ftcore_kd.data import most_tokens_held

        offline = cfg.kd_trainer and not (cfg.kd_teacher_model or cfg.kd_online_server_base_url)
        if not (offline and cfg.kd_top_k and is_main_process()):
            return
        held = most_tokens_held(trainer.train_dataset)
        if held is not None and held < cfg.kd_top_k:
            log.warning(
                "ftcore: kd_top_k is %d, but the dataset's logprobs hold at most %d tokens per "
                "position: KD trains on those %d. Set kd_top_k: %d to say so, or make the data "
                "again with kd_top_k %d (ftcore kd generate)",
                cfg.kd_top_k, held, held, held, cfg.kd_top_k,
            )  # fmt: skip

    @hookimpl
    def ftcore_post_model_load(self, cfg, model, tokenizer):
        """Check the student's logits can be rebuilt; load the online teacher beside the student."""
        if not cfg.kd_trainer:
            return
        from ftcore_kd.student import check_logits
        from ftcore_kd.teacher import make_teacher

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.softcap = check_logits(base.config)
        vocab = base.get_output_embeddings().weight.shape[0]
        self.teacher = make_teacher(cfg, model.device, model.dtype, vocab, tokenizer)

    @hookimpl
    def ftcore_compute_loss(self, cfg, model, inputs, trainer):
        """``(kd_alpha T^2 KD + kd_ce_alpha CE) / label tokens``, chunked (``ftcore_kd.loss``)."""
        if not cfg.kd_trainer:
            return None
        from ftcore_kd.loss import kd_loss
        from ftcore_kd.student import final_hidden_and_head

        teacher_fields = [
            inputs.pop(name, None) for name in ("kd_token_ids", "kd_logprobs", "kd_mask")
        ]
        if self.teacher is not None:
            teacher_fields = [t.to(inputs["input_ids"].device) for t in self.teacher.topk(inputs)]
        hidden, weight = final_hidden_and_head(model, inputs, trainer)
        loss, parts = kd_loss(
            hidden, weight, inputs["labels"], *teacher_fields,
            kd_alpha=cfg.kd_alpha, ce_alpha=cfg.kd_ce_alpha, temperature=cfg.kd_temperature,
            beta=cfg.kd_beta, normalize_topk=cfg.kd_normalize_topk,
            chunk_tokens=cfg.kd_chunk_tokens, softcap=self.softcap,
        )  # fmt: skip
        if model.training:
            for name, value in parts.items():
                trainer.ftcore_record_metric(name, value)
        return loss

    @hookimpl
    def ftcore_cli_commands(self):
        """``ftcore kd generate``: make a KD dataset with a teacher."""
        return {"kd": "ftcore_kd.cli:kd"}
