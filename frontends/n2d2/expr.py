"""A safe evaluator for N2D2's ``$(...)`` values.

N2D2 hands the text between the parentheses to ``python -c "print (expr)"``
(``IniParser::getPropertyValue``), so a model file can run anything.  irc never
executes text from a model file: the expression is parsed with :mod:`ast` and
only arithmetic is evaluated -- number literals, ``+ - * / // % **``, unary
``+``/``-``, parentheses, comparisons, the conditional ``a if c else b`` with
``and``/``or``/``not`` (N2D2's own models write ``$(0.0 if ${L} > 0 else 1.0)``),
and calls to ``int float round abs min max``.  Anything else is an
:class:`~irc.errors.IRCError` naming the file and line.  The result is the text
Python 3's ``print`` writes, which is what N2D2 substitutes.
"""
from __future__ import annotations

import ast
import operator
from typing import Callable, Union

from irc.errors import IRCError

Number = Union[int, float, bool]

_BINARY: dict[type, Callable[[Number, Number], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg,
                                                  ast.Not: operator.not_}
_COMPARE: dict[type, Callable[[Number, Number], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
FUNCTIONS: dict[str, Callable[..., Number]] = {"int": int, "float": float, "round": round, "abs": abs,
                                                "min": min, "max": max}
_MAX_RESULT_BITS = 100_000      # an integer power or product beyond this would only burn memory
_MAX_DIGITS = 400               # round()'s digits: a float has fewer than 400 decimal places either side
_MAX_LENGTH = 10_000            # characters in one expression
_HINT = ("irc evaluates arithmetic only: numbers, + - * / // % **, comparisons, `a if c else b`, "
         "and/or/not, and int float round abs min max; nothing in a model file is executed")


class _Refused(Exception):
    """The expression uses something outside the arithmetic subset."""


def evaluate(expression: str, *, file: str | None = None, line: int | None = None) -> str:
    """What ``print (expression)`` would print, for the arithmetic subset; IRCError otherwise."""
    value = evaluate_value(expression, file=file, line=line)
    try:
        return format_like_print(value)
    except ValueError as e:                     # an integer too long to print
        raise _error(expression, str(e), file, line) from None


def evaluate_value(expression: str, *, file: str | None = None, line: int | None = None) -> Number:
    """The number an arithmetic expression stands for; IRCError for anything else."""
    if len(expression) > _MAX_LENGTH:
        raise _error(expression[:60] + "...", f"longer than {_MAX_LENGTH:,} characters", file, line)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise _error(expression, f"not a valid expression ({_reason(e)})", file, line) from None
    try:
        return _evaluate(tree.body)
    except _Refused as e:
        raise _error(expression, str(e), file, line) from None
    except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as e:
        raise _error(expression, _reason(e), file, line) from None


def format_like_print(value: Number) -> str:
    """Python 3's ``print`` text for a number (``True``, ``16``, ``0.5``, ``450000.0``)."""
    return str(value)


def _error(expression: str, reason: str, file: str | None, line: int | None) -> IRCError:
    return IRCError(f"cannot evaluate $({expression}): {reason}", file=file, line=line, hint=_HINT)


def _reason(error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        return error.msg
    return str(error) or type(error).__name__


def _evaluate(node: ast.AST) -> Number:
    """Evaluate one node of the allowed subset (short-circuiting like Python)."""
    if isinstance(node, ast.Constant):
        return _literal(node)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _binary(node)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        return _compare(node)
    if isinstance(node, ast.IfExp):
        return _evaluate(node.body) if _evaluate(node.test) else _evaluate(node.orelse)
    if isinstance(node, ast.BoolOp):
        return _boolean(node)
    if isinstance(node, ast.Call):
        return _call(node)
    raise _Refused(_describe_refusal(node))


def _literal(node: ast.Constant) -> Number:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refused(f"only number literals are allowed, not {value!r}")
    return value


def _binary(node: ast.BinOp) -> Number:
    left, right = _evaluate(node.left), _evaluate(node.right)
    if isinstance(node.op, ast.Pow):
        _check_power(left, right)
    if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int):
        if abs(left).bit_length() + abs(right).bit_length() > _MAX_RESULT_BITS:
            raise _Refused(f"a product of {abs(left).bit_length()}- and {abs(right).bit_length()}-bit integers "
                           "is too large")
    return _BINARY[type(node.op)](left, right)


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse integer powers whose result would be astronomically large."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if abs(base).bit_length() * exponent > _MAX_RESULT_BITS:
            raise _Refused(f"{base} ** {exponent} is too large")


def _compare(node: ast.Compare) -> bool:
    left = _evaluate(node.left)
    for op, comparator in zip(node.ops, node.comparators):
        right = _evaluate(comparator)
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True


def _boolean(node: ast.BoolOp) -> Number:
    is_and = isinstance(node.op, ast.And)
    result = _evaluate(node.values[0])
    for operand in node.values[1:]:
        if bool(result) != is_and:             # `and` stops at a false value, `or` at a true one
            return result
        result = _evaluate(operand)
    return result


def _call(node: ast.Call) -> Number:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        raise _Refused(f"calling {name} is not allowed (only {', '.join(FUNCTIONS)})")
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise _Refused(f"{node.func.id}() takes plain positional arguments only")
    args = [_evaluate(a) for a in node.args]
    if node.func.id == "round" and len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > _MAX_DIGITS:
        raise _Refused(f"round() to {args[1]} digits is out of range (at most {_MAX_DIGITS})")
    return FUNCTIONS[node.func.id](*args)


def _describe_refusal(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"unknown name {node.id!r}: only numbers can be computed (INI variables are written ${{NAME}})"
    if isinstance(node, ast.Attribute):
        return f"attribute access (.{node.attr}) is not allowed"
    return f"{type(node).__name__} is not allowed"
