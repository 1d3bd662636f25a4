"""The harness that runs function-style code tests inside the sandbox, so that a solution cannot decide its result.

Inside the sandbox nothing the solution hands back is trusted: every value the tests receive from it (what its
functions return, the operands of each assertion) is copied into plain built-in values with exact types (an `int`
subclass whose `__eq__` says yes to everything is refused), and each assertion is written to the report channel as a
record of those values. The verifier (`pipeline.verifiers.code`) decodes the records and evaluates every assertion
again outside the sandbox; exit status, exit hooks, swallowed exceptions and anything printed count for nothing. The
tests run with the builtins as they were before the solution ran, and without the tracing hooks it may have set.

Records are Python literals, one per line, read back with `ast.literal_eval` (no code runs outside), each opened
by the run's token, a secret the verifier makes per run, so that a program writing lines of its own to the channel
does not forge a pass:
    (token, "cmp", site, op, operands...)   one assertion reached, with its operands encoded by `freeze`
    (token, "bad", site, reason)            an operand or returned value the harness refused (not plain, too large)
    (token, "error", name)                  the test statement raised (a failed assertion included)
    (token, "done")                         the test statement ran to its end

This module is sent into the sandbox as source, prefixed by a line that rebinds `__builtins__` to a private copy:
functions capture their builtins when they are defined, so what is defined here keeps the genuine ones whatever the
solution patches later. It imports nothing but `math`, which the sandbox preloads; `holds` and `thaw` are also used
outside the sandbox, so both sides judge an assertion with the same code.
"""

import math

MAX_DEPTH = 64  # nesting of a plain value; deeper structures are refused rather than risk the recursion limit
MAX_ITEMS = 1_000_000  # elements in one value
_CONTAINERS = {list: "l", tuple: "t", set: "S", frozenset: "F"}
# Lazy built-in iterators a function may honestly return (`map`, a generator): the tests get a generator of plain
# items instead. Matched by name, because most of these types have no built-in name to compare with.
_ITERATORS = {"generator", "map", "filter", "zip", "enumerate", "reversed", "list_iterator", "tuple_iterator",
              "range_iterator", "str_ascii_iterator", "str_iterator", "set_iterator", "dict_keyiterator",
              "dict_valueiterator", "dict_itemiterator", "itertools.chain"}


class NotPlain(BaseException):
    """A value not made of plain built-ins. A BaseException, so that a test's `except Exception` cannot swallow it."""


def freeze(value, _depth=0, _count=None):
    """A fresh copy of `value` made of exact built-in types, and its encoding (nested tuples of tags and literals).

    A subclass of a built-in (`Counter`, a namedtuple, an `IntEnum`, or a cheat's `int` whose `__eq__` says yes to
    everything) is copied through its base type's own methods, so none of its overrides survives; anything else is
    refused. The real type is `type(value)`: `isinstance` could be fooled by a `__class__` property."""
    if _count is None:
        _count = [0]
    _count[0] += 1
    if _depth > MAX_DEPTH or _count[0] > MAX_ITEMS:
        raise NotPlain("too_deep_or_large")
    kind = type(value)
    if value is None:
        return None, ("n",)
    if kind is bool:
        return value, ("b", value)
    if issubclass(kind, int):
        number = int.__int__(value)
        # Small ints as they are; big ones in hex, which has no digit limit (decimal stops at 4,300 digits).
        return number, ("i", number if -(1 << 63) <= number < (1 << 63) else hex(number))
    if issubclass(kind, float):
        number = float.__float__(value)
        return number, ("f", number.hex())
    if issubclass(kind, complex):
        number = complex(complex.__getattribute__(value, "real"), complex.__getattribute__(value, "imag"))
        return number, ("c", number.real.hex(), number.imag.hex())
    if issubclass(kind, str):
        text = str.__str__(value)
        return text, ("s", text)
    if issubclass(kind, bytes):
        data = bytes.__bytes__(value)
        return data, ("y", data)
    if kind is range:
        return value, ("r", value.start, value.stop, value.step)
    if issubclass(kind, dict):
        pairs = [(freeze(k, _depth + 1, _count), freeze(v, _depth + 1, _count)) for k, v in dict.items(value)]
        return {k[0]: v[0] for k, v in pairs}, ("d", tuple((k[1], v[1]) for k, v in pairs))
    for base, tag in _CONTAINERS.items():
        if issubclass(kind, base):
            items = [freeze(item, _depth + 1, _count) for item in base.__iter__(value)]
            return base(item[0] for item in items), (tag, tuple(item[1] for item in items))
    raise NotPlain(f"not_plain:{kind.__name__}"[:80])


def thaw(encoded):
    """The plain value a `freeze` encoding stands for."""
    tag = encoded[0]
    if tag == "n":
        return None
    if tag in ("b", "s", "y"):
        return encoded[1]
    if tag == "i":
        return encoded[1] if type(encoded[1]) is int else int(encoded[1], 16)
    if tag == "f":
        return float.fromhex(encoded[1])
    if tag == "c":
        return complex(float.fromhex(encoded[1]), float.fromhex(encoded[2]))
    if tag == "r":
        return range(*encoded[1:])
    if tag in ("l", "t", "S", "F"):
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](thaw(item) for item in encoded[1])
    if tag == "d":
        return {thaw(k): thaw(v) for k, v in encoded[1]}
    raise ValueError(f"unknown tag {tag!r}")


def holds(op, operands):
    """Whether an assertion holds on plain values. `op` is "truth", "not", "isclose" (a, b, rel_tol, abs_tol), or
    a tuple of comparison operators with one operand more than operators (a chain such as `a < b <= c`)."""
    if op == "truth":
        return bool(operands[0])
    if op == "not":
        return not operands[0]
    if op == "isclose":
        a, b, rel_tol, abs_tol = operands
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    return all(_compare(o, left, right) for o, left, right in zip(op, operands, operands[1:]))


def _compare(op, left, right):
    if op in ("is", "is not"):
        # Plain copies are new objects: identity means something only for the singletons, else it is equality.
        singleton = right is None or type(right) is bool
        same = left is right if singleton else (type(left) is type(right) and left == right)
        return same if op == "is" else not same
    return {
        "==": lambda: left == right, "!=": lambda: left != right, "<": lambda: left < right,
        "<=": lambda: left <= right, ">": lambda: left > right, ">=": lambda: left >= right,
        "in": lambda: left in right, "not in": lambda: left not in right,
    }[op]()


def run_test(setup, program, statement, report_fd, token):
    """The setup, then the solution in a namespace of its own, then one instrumented test statement that reaches
    the solution's functions only through wrappers returning plain copies. Ends the process when the statement
    ends, whatever the solution registered to run at exit."""
    import builtins
    import os
    import sys

    pristine = dict(builtins.__dict__)
    write, exit_now = os.write, os._exit

    def emit(*record):
        write(report_fd, (repr((token, *record)) + "\n").encode("utf-8", "surrogatepass"))

    def refused(site, error):
        emit("bad", site, str(error.args[0]))
        raise error

    def check(site, op, *operands):
        try:
            frozen = [freeze(value) for value in operands]
        except NotPlain as error:
            refused(site, error)
        emit("cmp", site, op, *(f[1] for f in frozen))
        if not holds(op, [f[0] for f in frozen]):
            raise AssertionError(f"assertion {site} failed")

    def plain_items(iterator):
        for item in iterator:
            try:
                yield freeze(item)[0]
            except NotPlain as error:
                refused("return", error)

    def plain_result(function):
        def call(*args, **kwargs):
            value = function(*args, **kwargs)
            if type(value).__name__ in _ITERATORS:
                return plain_items(value)
            try:
                return freeze(value)[0]
            except NotPlain as error:
                refused("return", error)
        return call

    tests = {"__name__": "__tests__", "__builtins__": pristine, "__check__": check}
    try:
        exec(setup, tests)
        solution = {**tests, "__name__": "solution", "__builtins__": builtins}
        del solution["__check__"]
        exec(program, solution)
        sys.settrace(None)
        sys.setprofile(None)
        if "threading" in sys.modules:
            sys.modules["threading"].settrace(None)
            sys.modules["threading"].setprofile(None)
        for name, value in solution.items():
            if name.startswith("__") or name in tests:
                continue
            # Classes stay as they are (tests build the solution's objects); every other callable is wrapped.
            wrap = callable(value) and not isinstance(value, type)
            tests[name] = plain_result(value) if wrap else value
        exec(statement, tests)
    except BaseException as error:  # the solution's exit or exception, a failed assertion: the test ends here
        emit("error", type(error).__name__)
        exit_now(0)
    emit("done")
    exit_now(0)
