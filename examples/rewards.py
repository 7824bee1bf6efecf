"""Reward functions for examples/grpo.yml (TRL's signature: lists in, one float per completion)."""


def exact_answer(completions, answer, **kwargs):
    """1.0 where the completion starts with the right sum (the dataset's ``answer`` column)."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(text.strip().startswith(expected)) for text, expected in zip(texts, answer)]


def short(completions, **kwargs):
    """Prefer short answers: 1.0 for at most 3 characters, less for longer ones."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [min(1.0, 3 / max(1, len(text.strip()))) for text in texts]
