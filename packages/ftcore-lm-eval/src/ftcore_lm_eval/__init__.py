"""ftcore-lm-eval: lm-evaluation-harness after training (``ftcore_post_train_unload``) or standalone."""

__version__ = "0.1.2"
