"""swallow: corpus construction for LLM pre-training (framework: records, shards, stages, runner, ledger)."""

__version__ = "0.1.0"
