"""Stage families, one module each; importing this package registers their stage and source types."""

from stages import code  # noqa: F401
from stages import write  # noqa: F401
