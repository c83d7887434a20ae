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

A comparison with a null operand is false (so ``llm_score < 8`` does not select rows that were never scored,
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


def parse(expr: str) -> ast.expr:
    """The checked syntax tree of ``expr`` (WhereError naming what is not allowed)."""
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise WhereError(f"not an expression: {expr!r} ({exc.msg})") from None
    _check(tree, expr)
    return tree


def _check(node: ast.AST, expr: str) -> None:
    ok = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Compare, ast.Name, ast.Load, ast.Constant,
          ast.List, ast.Tuple, ast.In, ast.NotIn, ast.Is, ast.IsNot, ast.USub, *_CMP)
    for sub in ast.walk(node):
        if not isinstance(sub, ok):
            raise WhereError(f"{expr!r}: {type(sub).__name__} is not allowed (comparisons of columns and "
                             "literals, and/or/not, in, is None)")
        if isinstance(sub, ast.UnaryOp) and isinstance(sub.op, ast.USub) and not isinstance(sub.operand, ast.Constant):
            raise WhereError(f"{expr!r}: '-' applies to number literals only")


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
