"""Long-lived pylint process: lints files named on stdin with pylint's own ``Run`` (the CLI's code path).

Started as a plain script (``python lint_server.py ARGS...``), never imported by the parent, so that its
interpreter state is that of ``python -m pylint``: only the standard library and pylint are imported, and
``sys.path`` is the interpreter's default (the script's folder is removed, as pylint's ``modify_sys_path``
does). Anything more (the project, pyarrow, ...) can change how astroid resolves imports and so the score
(seen: setuptools' distutils shim). What stays warm between files is what makes it fast: the imports and
astroid's cache of the modules the files import.

Some import machinery is stateful (setuptools' ``_distutils_hack`` finder turns itself off for the rest of the
process once ``pip`` is looked up): when a file changes the finders, they are restored and the astroid cache
entries built meanwhile are dropped, so every file sees what a fresh ``pylint`` process sees.

Python's cyclic garbage collector is switched off while files are linted and run as one full collection every
``SWALLOW_LINT_GC_EVERY`` files (default 50): astroid's cache is a large, growing graph of objects, and the
automatic full collections that keep re-walking it while it grows took about a third of pylint's time on a cold
cache (100 real files: 40 s -> 25-29 s, same scores). Collecting every few files bounds the memory that the
files' own cyclic garbage (their ASTs) holds in between. Garbage collection does not change what pylint finds.

Protocol: one JSON line per request on stdin, ``{"path": ..., "modname": ...}``; one JSON line per reply on
the original stdout: ``{"status": "ok", "note": float|null, "statements": int}`` or
``{"status": "error", "detail": str}``. pylint's own output is captured and discarded.
"""

import contextlib
import gc
import io
import json
import os
import sys


def main() -> None:
    args = sys.argv[1:]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    reply = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = io.StringIO()
    import astroid
    from pylint.lint import Run
    from pylint.reporters import CollectingReporter

    finders = list(sys.meta_path)
    finder_state = [dict(vars(f)) if hasattr(f, "__dict__") and not isinstance(f, type) else None for f in finders]

    def import_system_changed() -> bool:
        return sys.meta_path != finders or any(
            state is not None and vars(f) != state for f, state in zip(finders, finder_state))

    from pylint.utils import LinterStats

    linter = None
    gc_every = max(1, int(os.environ.get("SWALLOW_LINT_GC_EVERY", "50")))
    gc.disable()
    n_linted = 0

    def lint_file(path: str, reporter):
        """Lint one file; the first builds the linter through Run (as the CLI), later ones reuse it.

        Reuse skips re-parsing options and re-registering every checker per file; per-file state is reset the
        way a fresh run starts: new stats, exit status and reporter; ``check`` reopens every checker.
        """
        nonlocal linter
        if linter is None:
            linter = Run([*args, path], reporter=reporter, exit=False).linter
            return linter.stats
        linter.stats = LinterStats()
        linter.msg_status = 0
        linter.set_reporter(reporter)
        linter.check([path])
        linter.generate_reports()
        return linter.stats

    for line in sys.stdin:
        req = json.loads(line)
        cached_before = set(astroid.MANAGER.astroid_cache)
        chatter = io.StringIO()
        try:
            reporter = CollectingReporter()
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                stats = lint_file(req["path"], reporter)
            fatal = [m for m in reporter.messages if m.msg_id in ("F0001", "F0002")]
            if fatal:  # pylint crashed on the file (e.g. RecursionError while building its AST)
                out = {"status": "error", "detail": f"pylint {fatal[0].symbol}: {fatal[0].msg.splitlines()[0][:300]}"}
            else:
                out = {"status": "ok", "note": stats.global_note if stats.statement else None,
                       "statements": stats.statement}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as lint_error
            out = {"status": "error", "detail": f"{type(exc).__name__}: {str(exc)[:300]}"}
        finally:
            astroid.MANAGER.astroid_cache.pop(req["modname"], None)
            if import_system_changed():
                # A stateful finder changed while this file was linted (setuptools' distutils hack disables
                # itself once `pip` is looked up). A fresh `pylint` process would start with the original
                # finders, so restore them, and forget the modules astroid built under the changed state.
                for key in set(astroid.MANAGER.astroid_cache) - cached_before:
                    del astroid.MANAGER.astroid_cache[key]
                sys.meta_path[:] = finders
                for f, state in zip(finders, finder_state):
                    if state is not None:
                        vars(f).clear()
                        vars(f).update(state)
        n_linted += 1
        if n_linted % gc_every == 0:
            gc.collect()  # the previous files' garbage; this file's module was dropped from the cache above
        reply.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
