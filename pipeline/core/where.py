"""``where:`` on any stage: which rows the stage sees. The others pass through it unchanged and kept, counted as
``passed_through`` in its stats.

The expression is a Python-syntax boolean over the row's columns, parsed with ``ast`` and evaluated column-wise
with ``pyarrow.compute`` (never ``eval``). The grammar, all of it:

* comparisons ``== != < <= > >=`` between a column and a literal or another column, chained
  (``3 <= llm_score < 8``);
* ``and``, ``or``, ``not``, parentheses;
* ``col in [1, 2]`` / ``col not in ["a", "b"]``;
* ``col is None`` / ``col is not None``;
* literals: numbers, strings, ``True``, ``False``, ``None``.

Checked before any row is read: the expression's size (``MAX_CHARS``, ``MAX_DEPTH``), that ``in`` lists hold literals
of one kind and comparisons compare like with like (numbers, strings, booleans), and, once the stage's input
schema is known (``check``, called while planning the stage), that every column exists and has a type its
comparisons fit. A comparison with a null operand is false (so ``llm_score < 8`` does not select rows that were never
scored,
and ``not llm_score < 8`` does); ``and``/``or``/``not`` then combine plain booleans. ``in`` never matches a null;
``is None`` finds them. Examples: ``llm_score < 8``, ``language == "python" and n_tokens > 100``.
"""

from __future__ import annotations

import ast
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_CMP = {ast.Eq: "equal", ast.NotEq: "not_equal", ast.Lt: "less", ast.LtE: "less_equal", ast.Gt: "greater",
        ast.GtE: "greater_equal"}


class WhereError(ValueError):
    pass


#: Bounds of an expression: far above any real condition, far below what the parser or Arrow choke on.
MAX_CHARS, MAX_DEPTH = 4000, 40


def parse(expr: str) -> ast.expr:
    """The checked syntax tree of ``expr`` (WhereError naming what is not allowed)."""
    if not isinstance(expr, str):
        raise WhereError(f"expected an expression (a string), got {type(expr).__name__}")
    if len(expr) > MAX_CHARS:
        raise WhereError(f"the expression is {len(expr):,} characters; at most {MAX_CHARS:,}")
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise WhereError(f"not an expression: {expr[:60]!r}{'...' if len(expr) > 60 else ''} ({exc.msg})") from None
    except (RecursionError, MemoryError):
        raise WhereError(f"the expression nests too deeply (at most {MAX_DEPTH} levels)") from None
    _check(tree, expr)
    _kinds(tree, expr, None)
    return tree


def _depth(node: ast.AST) -> int:
    deepest, todo = 0, [(node, 1)]
    while todo:
        n, d = todo.pop()
        deepest = max(deepest, d)
        todo += [(c, d + 1) for c in ast.iter_child_nodes(n)]
    return deepest


def _check(node: ast.AST, expr: str) -> None:
    if _depth(node) > MAX_DEPTH:
        raise WhereError(f"the expression nests too deeply (at most {MAX_DEPTH} levels)")
    ok = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Compare, ast.Name, ast.Load, ast.Constant,
          ast.List, ast.Tuple, ast.In, ast.NotIn, ast.Is, ast.IsNot, ast.USub, *_CMP)
    for sub in ast.walk(node):
        if not isinstance(sub, ok):
            raise WhereError(f"{expr[:200]!r}: {type(sub).__name__} is not allowed (comparisons of columns and "
                             "literals, and/or/not, in, is None)")
        if isinstance(sub, ast.UnaryOp) and isinstance(sub.op, ast.USub) and \
                not (isinstance(sub.operand, ast.Constant) and _lit_kind(sub.operand.value) == "number"):
            raise WhereError(f"{expr[:200]!r}: '-' applies to number literals only")
        if isinstance(sub, ast.Constant) and isinstance(sub.value, int | float) and not isinstance(sub.value, bool) \
                and not (abs(sub.value) <= 2 ** 53 and sub.value == sub.value and abs(sub.value) != float("inf")):
            raise WhereError(f"{expr[:200]!r}: the number {str(sub.value)[:40]} is out of range (at most 2^53 in "
                             "size: Arrow compares 64-bit numbers)")
        if isinstance(sub, ast.Constant) and _lit_kind(sub.value) is None:
            raise WhereError(f"{expr[:200]!r}: {sub.value!r} is not a literal of the grammar (numbers, strings, True, "
                             "False, None)")


def _lit_kind(v: Any) -> str | None:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return None


def _type_kind(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_null(t):
        return "any"
    return str(t)


def _kinds(node: ast.AST, expr: str, schema: pa.Schema | None) -> str:
    """The kind of ``node`` ("bool", "number", "string", "null", "any" where a column's type is not known yet, or
    an Arrow type name), checking on the way that comparisons compare like with like and that conditions are
    booleans; WhereError naming the first misfit."""
    def fail(msg: str):
        raise WhereError(f"{expr[:200]!r}: {msg}")

    def kind(n: ast.AST) -> str:
        if isinstance(n, ast.Name):
            if n.id in ("True", "False"):
                return "bool"
            if schema is None:
                return "any"
            if n.id not in schema.names:
                fail(f"no column {n.id!r} in the stage's input (have: {', '.join(schema.names)})")
            return _type_kind(schema.field(n.id).type)
        if isinstance(n, ast.Constant):
            return _lit_kind(n.value)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return "number"
        if isinstance(n, ast.List | ast.Tuple):
            fail("a list is allowed only on the right of 'in'")
        return _kinds(n, expr, schema)

    def boolean(n: ast.AST, what: str) -> None:
        k = kind(n)
        if k not in ("bool", "any"):
            fail(f"{what} must be a condition, not a {k} ({ast.unparse(n)[:80]})")

    if isinstance(node, ast.BoolOp):
        for v in node.values:
            boolean(v, "each side of and/or")
        return "bool"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        boolean(node.operand, "what 'not' negates")
        return "bool"
    if isinstance(node, ast.Compare):
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            lk = kind(left)
            if isinstance(op, ast.Is | ast.IsNot):
                if not (isinstance(right, ast.Constant) and right.value is None):
                    fail("'is' compares with None only")
            elif isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right, ast.List | ast.Tuple):
                    fail("'in' takes a list of literals: col in [1, 2]")
                items = {kind(e) for e in right.elts}
                if "null" in items:
                    fail("None in an 'in' list never matches; use 'is None'")
                if len(items) > 1:
                    fail(f"an 'in' list mixes {' and '.join(sorted(items))} values")
                if items and lk != "any" and items != {lk}:
                    fail(f"{ast.unparse(left)[:60]} is a {lk}, the list holds {items.pop()} values")
            else:
                rk = kind(right)
                if "null" in (lk, rk):
                    fail("a comparison with None is never true; use 'is None' / 'is not None'")
                if "any" not in (lk, rk) and lk != rk:
                    fail(f"{ast.unparse(left)[:60]} is a {lk} and {ast.unparse(right)[:60]} a {rk}: they cannot be "
                         "compared")
                if lk not in ("number", "string", "bool", "any"):
                    fail(f"{ast.unparse(left)[:60]} is a {lk}: only numbers, strings and booleans compare")
            left = right
        return "bool"
    return kind(node)


def check(expr: str, schema: pa.Schema) -> None:
    """Check ``expr`` against the stage's input schema (while planning, before any row is read)."""
    tree = parse(expr)
    top = _kinds(tree, expr, schema)
    if top not in ("bool", "any"):
        raise WhereError(f"{expr[:200]!r} is not a condition (it gives a {top})")


def columns(expr: str) -> set[str]:
    return _names(parse(expr))


def _names(tree: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in ("True", "False", "None")}


def mask(expr: str, table: pa.Table) -> pa.Array:
    """Boolean array: True where the row satisfies ``expr`` (null counts as False)."""
    tree = parse(expr)
    missing = sorted(_names(tree) - set(table.column_names))
    if missing:
        raise WhereError(f"{expr!r}: no column {', '.join(map(repr, missing))} in the rows (have: "
                         f"{', '.join(table.column_names)})")
    out = _eval(tree, table)
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    if not isinstance(out, pa.Array) or not pa.types.is_boolean(out.type):
        raise WhereError(f"{expr!r} is not a condition (it gives {getattr(out, 'type', type(out).__name__)})")
    return pc.fill_null(out, False)


def _value(node: ast.AST, table: pa.Table) -> Any:
    if isinstance(node, ast.Name):
        return table.column(node.id)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -node.operand.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_value(e, table) for e in node.elts]
    return _eval(node, table)


def _eval(node: ast.AST, table: pa.Table):
    if isinstance(node, ast.BoolOp):
        parts = [_eval(v, table) for v in node.values]
        fn = pc.and_kleene if isinstance(node.op, ast.And) else pc.or_kleene
        out = parts[0]
        for p in parts[1:]:
            out = fn(out, p)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return pc.invert(pc.fill_null(_eval(node.operand, table), False))
    if isinstance(node, ast.Compare):
        out, left = None, node.left
        for op, right in zip(node.ops, node.comparators):
            lv, rv = _value(left, table), _value(right, table)
            if isinstance(op, ast.Is | ast.IsNot):
                if rv is not None:
                    raise WhereError("'is' compares with None only")
                step = pc.is_null(lv) if isinstance(op, ast.Is) else pc.is_valid(lv)
            elif isinstance(op, ast.In | ast.NotIn):
                step = pc.is_in(lv, value_set=pa.array(rv))
                step = pc.invert(step) if isinstance(op, ast.NotIn) else step
            else:
                step = getattr(pc, _CMP[type(op)])(lv, rv)
            step = pc.fill_null(step, False)  # a null operand: false
            out = step if out is None else pc.and_(out, step)
            left = right
        return out
    if isinstance(node, ast.Name | ast.Constant):
        v = _value(node, table)
        return v if isinstance(v, pa.ChunkedArray | pa.Array) else pa.array([v] * len(table))
    raise WhereError(f"cannot evaluate {ast.dump(node)}")


def cut_points(expr: str, column: str) -> list[float]:
    """The numbers ``column`` is compared with in ``expr`` (``llm_score < 3 or llm_score >= 8`` -> [3, 8]): where a
    ``where:`` splits a measurement into tiers, for the report to draw."""
    out = []
    for node in ast.walk(parse(expr)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if not any(isinstance(o, ast.Name) and o.id == column for o in operands):
            continue
        for o in operands:
            v = o.operand.value * -1 if isinstance(o, ast.UnaryOp) and isinstance(o.operand, ast.Constant) else \
                getattr(o, "value", None) if isinstance(o, ast.Constant) else None
            if isinstance(v, int | float) and not isinstance(v, bool):
                out.append(float(v))
    return out
