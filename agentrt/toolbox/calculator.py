"""A calculator tool: arithmetic parsed with ``ast`` against a whitelist, never ``eval``.

Accepted: int and float literals, ``+ - * / // % **``, unary ``+``/``-`` and parentheses.
Anything else (names, calls, attributes, comparisons, strings, ...) is refused with a
message the model can act on. Work is bounded: the expression's length, every integer's
size, and exponents are checked *before* computing, so ``9**9**9`` is refused instead of
hanging the process.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from ..errors import ToolError
from ..tools import tool

__all__ = ["MAX_EXPRESSION_CHARS", "MAX_INTEGER_BITS", "calculator", "evaluate"]

#: Longest expression accepted, in characters.
MAX_EXPRESSION_CHARS = 1_000
#: Largest integer magnitude allowed anywhere in a computation (about 1,233 digits).
MAX_INTEGER_BITS = 4_096

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_ALLOWED = "numbers, + - * / // % **, unary minus and parentheses"


class CalculatorError(ToolError, ValueError):
    """The expression is not plain arithmetic, or its result is out of bounds."""


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression safely.

    Args:
        expression: e.g. ``"(2 + 3) * 4 ** 2 / 7"``.

    Returns:
        The result, an ``int`` when every step stayed integral, else a ``float``.

    Raises:
        CalculatorError: the expression is not arithmetic, is malformed, divides by zero
            or would produce a number that is too large.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(
            f"the expression is {len(expression)} characters long; the limit is "
            f"{MAX_EXPRESSION_CHARS}"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(
            f"cannot parse {expression!r} as arithmetic ({exc.msg}); use {_ALLOWED}"
        ) from exc
    except (RecursionError, MemoryError, ValueError) as exc:
        raise CalculatorError(f"the expression {expression[:80]!r} is nested too deeply") from exc
    try:
        return _eval(tree.body)
    except ZeroDivisionError as exc:
        raise CalculatorError(f"division by zero in {expression!r}") from exc
    except OverflowError as exc:
        raise CalculatorError(f"the result of {expression!r} is too large: {exc}") from exc
    except RecursionError as exc:
        raise CalculatorError(f"the expression {expression[:80]!r} is nested too deeply") from exc


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CalculatorError(f"{value!r} is not a number; use {_ALLOWED}")
        return _checked(value)
    if isinstance(node, ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            raise CalculatorError(
                f"the operator {_describe(node.op)} is not allowed; use {_ALLOWED}"
            )
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(op(left, right))
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY.get(type(node.op))
        if unary is None:
            raise CalculatorError(
                f"the operator {_describe(node.op)} is not allowed; use {_ALLOWED}"
            )
        return _checked(unary(_eval(node.operand)))
    raise CalculatorError(f"{_describe(node)} are not allowed; use only {_ALLOWED}")


def _check_power(base: Number, exponent: Number) -> None:
    if isinstance(exponent, int) and isinstance(base, int):
        # |base ** exponent| has about bit_length * exponent bits: refuse before computing.
        if (
            exponent > 0
            and abs(base) > 1
            and (abs(base).bit_length() - 1) * exponent > MAX_INTEGER_BITS
        ):
            raise CalculatorError(
                f"{base} ** {exponent} is too large: results are limited to "
                f"{MAX_INTEGER_BITS}-bit integers"
            )
    elif abs(exponent) > 10_000 and abs(base) not in (0, 1):
        raise CalculatorError(f"the exponent {exponent} is too large")


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise CalculatorError("the result is a complex number, which is not supported")
    if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
        raise CalculatorError(
            f"an intermediate result is too large: results are limited to "
            f"{MAX_INTEGER_BITS}-bit integers"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is too large to represent (overflow)")
    return value  # type: ignore[no-any-return]


_NAMES: dict[type[ast.AST], str] = {
    ast.Name: "names (variables)",
    ast.Call: "function calls",
    ast.Attribute: "attribute accesses",
    ast.Subscript: "subscripts",
    ast.Compare: "comparisons",
    ast.BoolOp: "boolean operators",
    ast.Lambda: "lambdas",
    ast.IfExp: "conditional expressions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignments",
}


def _describe(node: ast.AST) -> str:
    if isinstance(node, (ast.operator, ast.unaryop)):
        symbols = {
            ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
            ast.RShift: ">>", ast.MatMult: "@", ast.Invert: "~", ast.Not: "not",
        }  # fmt: skip
        return repr(symbols.get(type(node), type(node).__name__))
    if isinstance(node, ast.Name):
        return f"names such as {node.id!r}"
    return _NAMES.get(type(node), f"{type(node).__name__} expressions")


@tool
def calculator(expression: str) -> Number:
    """Evaluate an arithmetic expression exactly and return the number.

    Supports numbers, + - * / // % ** (power), unary minus and parentheses; no variables
    or functions.

    Args:
        expression: the arithmetic to compute, e.g. "(17 + 25) * 3 / 2".
    """
    return evaluate(expression)
