"""What a lint score is: SwallowCode's pylint options, the comment-ratio penalty and the final score.

pylint with ``--disable=E0401,C0114,C0301,C0103,C0116,C0411,R0903,W0511,C0412`` gives the score it prints (0-10,
two decimals); it is multiplied by (1 - comment ratio), where the ratio is COMMENT tokens over all ``tokenize``
tokens; a file that is all comments scores 0. The stage keeps a final score >= 7.0. How pylint is run (in which
environment, by which process) is elsewhere: ``isolation`` and ``client``.
"""

from __future__ import annotations

import hashlib
import io
import tokenize

#: SwallowCode's pylint options (the messages it disables).
SWALLOWCODE_DISABLE = "E0401,C0114,C0301,C0103,C0116,C0411,R0903,W0511,C0412"


def comment_ratio(source: str) -> tuple[float, bool]:
    """(COMMENT tokens / all tokenize tokens, whether the file has any code token). Tokenize errors: (0, True)."""
    total = comments = code = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            total += 1
            if tok.type == tokenize.COMMENT:
                comments += 1
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.INDENT,
                                  tokenize.DEDENT, tokenize.ENCODING):
                code += 1
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return 0.0, True
    return (comments / total if total else 0.0), code > 0


def pylint_args(disable: str, rcfile: str | None = None) -> list[str]:
    """SwallowCode's options. ``rcfile``: an explicit (empty) configuration file, so that pylint never looks for
    one (``pyproject.toml``/``pylintrc``/``setup.cfg`` in the working folder and its parents, ``$PYLINTRC``,
    ``~/.pylintrc``, ``/etc/pylintrc``): any of those can hold an ``init-hook`` (code pylint runs) or options
    that change every score."""
    args = [f"--disable={disable}", "--persistent=n", "--jobs=1", "--score=y"]
    return args + [f"--rcfile={rcfile}"] if rcfile else args


def module_name(source: str) -> str:
    """The module name a file is linted under: from its content alone (never a corpus path or id, which could
    name a folder outside the lint folder or collide with a module the file imports)."""
    return "m_" + hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def printed_score(note: float | None) -> float:
    """The score as the CLI prints it (two decimals; what scripts parse); no statements (no score printed): 0."""
    return float(f"{note:.2f}") if note is not None else 0.0


def final_score(printed: float, ratio: float, has_code: bool) -> float:
    """SwallowCode's score: pylint's, less the comment ratio's share; a file of comments only scores 0."""
    return 0.0 if not has_code else printed * (1.0 - ratio)
