"""Python source helpers shared by the code filters and the rewrite stage: CPython's own syntax check (nothing
executed) and ruff's binary and formatter (isolated: no configuration file read)."""

from __future__ import annotations

import subprocess
import warnings


def syntax_check(source: str, path: str = "<code>") -> tuple[str | None, str | None]:
    """(reason, detail) of ``compile(source, path, "exec")``; (None, None) when it compiles. Never executes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning/DeprecationWarning are not rejections
            compile(source, path, "exec", dont_inherit=True)
        return None, None
    except SyntaxError as exc:  # includes IndentationError, TabError
        return f"syntax_error:{type(exc).__name__}", f"{exc.msg} (line {exc.lineno})"
    except ValueError as exc:  # e.g. source code string cannot contain null bytes
        return "syntax_error:ValueError", str(exc)
    except RecursionError as exc:
        return "syntax_error:RecursionError", str(exc)[:500]
    except MemoryError as exc:
        return "syntax_error:MemoryError", str(exc)[:500] or "parser ran out of memory (deeply nested input)"
    except OverflowError as exc:
        return "syntax_error:OverflowError", str(exc)[:500]


def ruff_bin() -> str:
    from ruff.__main__ import find_ruff_bin

    return find_ruff_bin()


def ruff_format(text: str, line_length: int = 88) -> tuple[str, str | None]:
    """(formatted text, None), or (the text unchanged, ruff's error) where ruff cannot format it. Isolated: no
    configuration file is read."""
    proc = subprocess.run([ruff_bin(), "format", "--isolated", f"--line-length={line_length}",
                           "--stdin-filename=snippet.py", "-"], input=text, capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        return proc.stdout, None
    return text, proc.stderr.strip()[:500] or f"ruff exited {proc.returncode}"
