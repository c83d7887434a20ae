"""The stages, in the order data flows through them:

    ingest/    raw inputs -> records: code corpora (code.py), text documents (documents.py), WARC files (warc.py)
    extract/   HTML -> main text with math kept (html.py), language identification (langid.py)
    filters/   keep or reject: syntax, pylint, ruff, scripts (code); quality rules, math score (web)
    dedup/     exact and near-duplicate removal across all shards (global stages)
    rewrite/   LLM rewriting and scoring with vLLM (prompts in ../prompts)
    tokenize/  Megatron-LM .bin/.idx
    outputs/   the final dataset (Parquet + card), Hub publishing

Each type is declared in pyproject.toml's entry points; the framework (pipeline/) never imports this package.
"""
