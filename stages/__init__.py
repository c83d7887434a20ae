"""Stage families, one module each; importing this package registers their stage and source types."""

from stages import code, rewrite, web, write  # noqa: F401
