"""A safe evaluator for N2D2's ``$(...)`` expressions.

N2D2 hands them to ``python -c "print(...)"``; irc never executes anything
from a model file.  The expression is parsed with :mod:`ast` and only
arithmetic is evaluated: numbers, + - * / // % **, unary signs, comparisons,
``a if cond else b``, ``and``/``or``/``not``, and int, float, round, abs, min,
max.  The result is printed as Python's print would.
"""
from __future__ import annotations

import ast
import math
import operator

from irc.errors import IRCError

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCTIONS = {"int": int, "float": float, "round": round, "abs": abs, "min": min, "max": max}
_MAX_POWER = 10_000


class ExpressionError(ValueError):
    pass


def _eval(node: ast.AST):
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_POWER:
            raise ExpressionError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _eval(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body) if _eval(node.test) else _eval(node.orelse)
    if isinstance(node, ast.BoolOp):
        values = [_eval(v) for v in node.values]
        result = values[0]
        for v in values[1:]:
            result = (result and v) if isinstance(node.op, ast.And) else (result or v)
        return result
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and not node.keywords):
        return _FUNCTIONS[node.func.id](*[_eval(a) for a in node.args])
    raise ExpressionError(f"{type(node).__name__} is not allowed")


def format_python(value) -> str:
    """What ``print(value)`` writes."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    return str(value)


def evaluate(text: str, *, file: str | None = None, line: int | None = None) -> str:
    """The printed value of an arithmetic expression; anything else is an IRCError."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return format_python(_eval(tree))
    except (SyntaxError, ExpressionError, TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
        raise IRCError(f"cannot evaluate $({text}): {e}", file=file, line=line,
                       hint="irc evaluates arithmetic only (numbers, + - * / // % **, comparisons, "
                            "x if c else y, int float round abs min max); nothing is executed") from None
