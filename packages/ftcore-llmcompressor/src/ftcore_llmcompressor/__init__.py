"""ftcore-llmcompressor: sparse fine-tuning with LLM Compressor 0.14, compressed saves, sparsify."""

__version__ = "0.1.2"
