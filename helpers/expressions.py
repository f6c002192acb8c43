"""Arithmetic expressions in `t` (the frame number), evaluated without `eval`.

`compile_expression("1 + 0.01*sin(t/5)")` parses with `ast.parse(mode="eval")` and builds
closures from a whitelist: numbers, `t`, `pi`, `e`, `tau`, `+ - * / // % **`, unary `+ -`, calls
of FUNCTIONS without keyword arguments, and `a if cond else b` where cond is comparisons
(`< <= > >= == !=`, chains) joined by `and` / `or` / `not`. Anything else (names, attributes,
subscripts, strings, lambdas, ...) is a `ValueError` quoting the part. Arithmetic is in floats and
`**` is `math.pow`, so `9**9**9` is an overflow error, not a huge integer; every intermediate
result must be finite, else `EvalError` names the part. User text never reaches eval, exec or
compile.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable

Fn = Callable[[float], float]

CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
_UNARY = ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "sqrt", "exp",
          "log10", "log2", "floor", "ceil", "degrees", "radians")
# name: (function, fewest arguments, most arguments or None for any number)
FUNCTIONS: dict[str, tuple[Callable[..., float], int, int | None]] = {
    **{fname: (getattr(math, fname), 1, 1) for fname in _UNARY},
    "abs": (abs, 1, 1), "round": (round, 1, 1), "log": (math.log, 1, 2),
    "atan2": (math.atan2, 2, 2), "pow": (math.pow, 2, 2), "fmod": (math.fmod, 2, 2),
    "hypot": (math.hypot, 2, None), "min": (min, 2, None), "max": (max, 2, None),
    "clamp": (lambda x, lo, hi: min(max(x, lo), hi), 3, 3),
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: math.pow}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}
_NAMES = f"t, {', '.join(CONSTANTS)} and the functions {', '.join(sorted(FUNCTIONS))}"


def quote(text: str) -> str:
    """`text` quoted for a message, cut to 60 characters."""
    return repr(text if len(text) <= 60 else f"{text[:57]}...")


class EvalError(Exception):
    """An expression failed at some t; the caller adds where (schedule, frame)."""


def compile_expression(value: str) -> tuple[Fn, bool]:
    """A function of t built from the whitelisted syntax tree of `value`, and whether it uses t.

    Linear in the length of `value`; built once per distinct text (settings are checked on every
    copy), so the same text gives the same (pure) function.
    """
    return _compile(" ".join(value.split()))


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> tuple[Fn, bool]:
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"{quote(source)} is not a valid expression ({e.msg})") from None
    except RecursionError:
        raise ValueError(f"{quote(source)} is nested too deeply or chains too many "
                         "operations for Python to read") from None
    except (ValueError, MemoryError):
        raise ValueError(f"{quote(source)} is not a valid expression") from None
    builder = _Builder(source)
    try:
        return builder.build(tree.body), builder.uses_t
    except RecursionError:
        raise ValueError(f"{quote(source)} is nested too deeply") from None


def _apply(function: Callable[..., float], part: Callable[[], str], *args: float) -> float:
    """`function(*args)` as a finite float, or an EvalError naming `part()` (made only then)."""
    try:
        value = float(function(*args))
    except ZeroDivisionError:
        raise EvalError(f"division by zero in {quote(part())}") from None
    except OverflowError:
        raise EvalError(f"{quote(part())} is too large (overflow)") from None
    except ValueError:
        raise EvalError(f"{quote(part())} is outside the function's domain") from None
    if not math.isfinite(value):
        raise EvalError(f"{quote(part())} is not finite ({value})")
    return value


class _Builder:
    """Turns whitelisted syntax nodes into closures; anything else is a ValueError naming it."""

    def __init__(self, source: str) -> None:
        self.source, self.uses_t = source.encode(), False  # one line: offsets are UTF-8 bytes

    def part(self, node: ast.AST) -> str:
        """The source of `node`: a slice by its offsets (not `ast.get_source_segment`, which
        splits the whole source into lines on every call)."""
        start, end = getattr(node, "col_offset", None), getattr(node, "end_col_offset", None)
        if start is None or end is None:
            return ast.unparse(node)
        return self.source[start:end].decode(errors="replace")

    def lazy_part(self, node: ast.AST) -> Callable[[], str]:
        """`part(node)`, made only when an error needs it."""
        source, start, end = self.source, node.col_offset, node.end_col_offset
        return lambda: source[start:end].decode(errors="replace")

    def build(self, node: ast.AST) -> Fn:
        method = getattr(self, f"_{type(node).__name__.lower()}", None)
        if method is None:
            kind = type(node).__name__.lower()
            raise ValueError(f"{quote(self.part(node))} is not allowed ({kind})")
        return method(node)

    def _constant(self, node: ast.Constant) -> Fn:
        number = node.value
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ValueError(f"{quote(self.part(node))} is not a number")
        if not -1e308 <= number <= 1e308:  # also inf from `1e999`; a huge int cannot be a float
            raise ValueError(f"the number {quote(self.part(node))} is too large")
        number = float(number)
        return lambda t: number

    def _name(self, node: ast.Name) -> Fn:
        if node.id == "t":
            self.uses_t = True
            return lambda t: t
        if node.id in CONSTANTS:
            number = CONSTANTS[node.id]
            return lambda t: number
        if node.id in FUNCTIONS:
            raise ValueError(f"function {node.id!r} must be called, like {node.id}(t)")
        raise ValueError(f"unknown name {node.id!r}; use only {_NAMES}")

    def _unaryop(self, node: ast.UnaryOp) -> Fn:
        operand = self.build(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda t: -operand(t)
        if isinstance(node.op, ast.UAdd):
            return operand
        raise ValueError(f"{quote(self.part(node))}: this operator is not allowed here")

    def _binop(self, node: ast.BinOp) -> Fn:
        """A chain `a + b - c * ...` as one loop over its operations (a sum of a thousand terms
        is a tree a thousand deep: built and evaluated by recursion, it would overflow)."""
        chain = []
        while isinstance(node, ast.BinOp):
            op = _BINARY.get(type(node.op))
            if op is None:
                raise ValueError(f"the operator in {quote(self.part(node))} is not allowed")
            chain.append((op, node.right, self.lazy_part(node)))
            node = node.left
        first = self.build(node)
        steps = [(op, self.build(right), part) for op, right, part in reversed(chain)]

        def evaluate(t: float) -> float:
            value = first(t)
            for op, right, part in steps:
                value = _apply(op, part, value, right(t))
            return value

        return evaluate

    def _call(self, node: ast.Call) -> Fn:
        part = self.lazy_part(node)
        if not isinstance(node.func, ast.Name):
            raise ValueError(f"only calls of named functions are allowed, not {quote(part())}")
        if node.func.id not in FUNCTIONS:
            raise ValueError(f"unknown function {node.func.id!r}; use only {_NAMES}")
        if node.keywords:
            raise ValueError(f"keyword arguments are not allowed: {quote(part())}")
        function, fewest, most = FUNCTIONS[node.func.id]
        if len(node.args) < fewest or (most is not None and len(node.args) > most):
            wanted = f"{fewest}" if fewest == most else f"at least {fewest}"
            noun = "argument" if wanted == "1" else "arguments"
            raise ValueError(f"{node.func.id} takes {wanted} {noun}: {quote(part())}")
        args = [self.build(arg) for arg in node.args]
        return lambda t: _apply(function, part, *(arg(t) for arg in args))

    def _ifexp(self, node: ast.IfExp) -> Fn:
        test = self.condition(node.test)
        body, orelse = self.build(node.body), self.build(node.orelse)
        return lambda t: body(t) if test(t) else orelse(t)

    def _compare(self, node: ast.Compare) -> Fn:
        part = quote(self.part(node))
        raise ValueError(f"comparison {part} is only allowed in 'a if cond else b'")

    def condition(self, node: ast.AST) -> Callable[[float], bool]:
        """A condition: comparisons joined by and / or / not."""
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(value) for value in node.values]
            combine = all if isinstance(node.op, ast.And) else any
            return lambda t: combine(part(t) for part in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.condition(node.operand)
            return lambda t: not inner(t)
        if not isinstance(node, ast.Compare) or not all(type(o) in _COMPARE for o in node.ops):
            part = quote(self.part(node))
            raise ValueError(f"the condition {part} must be a comparison like t < 30")
        terms = [self.build(term) for term in (node.left, *node.comparators)]
        ops = [_COMPARE[type(o)] for o in node.ops]
        return lambda t: all(op(terms[i](t), terms[i + 1](t)) for i, op in enumerate(ops))
