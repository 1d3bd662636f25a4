"""The code-test harness's parts that need no sandbox: plain copies, the assertion rewrite and judging a report."""

import ast
import math
from collections import Counter, OrderedDict, namedtuple

import pytest

from pipeline.verifiers.code import instrument, judge_report
from pipeline.verifiers.harness import NotPlain, freeze, holds, thaw


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -7, 10 ** 40, 1.5, float("inf"), 2 + 3j, "", "x\ny", "\udc80", b"\x00", [1, [2]], (1,), (),
     {1, 2}, frozenset({3}), {"a": (1, 2)}, range(1, 9, 2)],
    ids=repr,
)
def test_plain_values_survive_the_round_trip_with_their_types(value):
    copy, encoded = freeze(value)
    back = thaw(ast.literal_eval(repr(encoded)))
    assert back == value and type(back) is type(value) and copy == value


def test_nan_survives_the_round_trip():
    assert math.isnan(thaw(ast.literal_eval(repr(freeze(float("nan"))[1]))))


class AlwaysEqual:
    def __eq__(self, other):
        return True


class FriendlyInt(int):
    def __eq__(self, other):
        return True


class FakeInt:
    __class__ = property(lambda self: int)  # fools isinstance, not type()

    def __eq__(self, other):
        return True


@pytest.mark.parametrize(
    "value",
    [AlwaysEqual(), [1, AlwaysEqual()], {"k": AlwaysEqual()}, FakeInt(), iter([1]), object()],
    ids=["object", "inside-a-list", "inside-a-dict", "claims-to-be-an-int", "iterator", "bare-object"],
)
def test_anything_not_made_of_built_ins_is_refused(value):
    with pytest.raises(NotPlain):
        freeze(value)


class Rigged(list):
    def __eq__(self, other):
        return True

    def __iter__(self):
        return iter([4, 5, 6])


@pytest.mark.parametrize(
    "value, copy",
    [
        (FriendlyInt(3), 3),
        (Counter("aab"), {"a": 2, "b": 1}),
        (OrderedDict(x=1), {"x": 1}),
        (namedtuple("Point", "x y")(1, 2), (1, 2)),
        (Rigged([1]), [1]),
    ],
    ids=["int-that-equals-everything", "counter", "ordered-dict", "namedtuple", "rigged-list"],
)
def test_subclasses_of_built_ins_are_copied_through_their_base_type(value, copy):
    frozen, _ = freeze(value)
    assert frozen == copy and type(frozen) is type(copy)
    assert frozen != [7], "no override survives the copy"


def test_too_deep_a_value_is_refused_not_a_recursion_error():
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(NotPlain):
        freeze(deep)


@pytest.mark.parametrize(
    "op, operands, expected",
    [
        (("==",), [[1, 2], [1, 2]], True),
        (("==",), [[1, 2], (1, 2)], False),
        (("<", "<="), [1, 2, 2], True),
        (("<", "<="), [1, 2, 1], False),
        (("is",), [None, None], True),
        (("is not",), [0, None], True),
        (("in",), [2, [1, 2]], True),
        ("truth", [[]], False),
        ("not", [0], True),
        ("isclose", [0.1 + 0.2, 0.3, 1e-9, 0.0], True),
    ],
)
def test_holds(op, operands, expected):
    assert holds(op, operands) is expected


def test_every_assert_becomes_a_recorded_check_and_nothing_else_changes():
    source = "def check(c):\n    for i in range(3):\n        assert c(i) == i, 'msg'\n    assert not c(-1)\nx = 1"
    rewritten = instrument(source)
    assert "assert" not in rewritten
    assert "__check__(1, ('==',), c(i), i)" in rewritten and "__check__(2, 'not', c(-1))" in rewritten
    assert rewritten.endswith("x = 1")


@pytest.mark.parametrize(
    "report, passed, reason",
    [
        (b"('T', 'cmp', 1, ('==',), ('i', 2), ('i', 2))\n('T', 'done',)\n", True, None),
        (b"('T', 'cmp', 1, ('==',), ('i', 2), ('i', 3))\n('T', 'done',)\n", False, "assertion_failed"),
        (b"('T', 'done',)\n", False, "no_assertion_reached"),
        (b"('T', 'cmp', 1, ('==',), ('i', 2), ('i', 2))\n", False, "ended_before_the_test"),
        (b"", False, "ended_before_the_test"),
        (b"('T', 'cmp', 1, ('==',), ('i', 2), ('i', 2))\n('T', 'error', 'SystemExit')\n", False, "raised_SystemExit"),
        (b"('T', 'bad', 1, 'not_plain:Any')\n('T', 'error', 'NotPlain')\n", False, "not_plain:Any"),
        (b"('T', 'done')\n('T', 'cmp', 1, ('==',), ('i', 2), ('i', 2))\n('T', 'done')\n", False,
         "unreadable_report"),
        (b"('X', 'cmp', 1, ('==',), ('i', 2), ('i', 2))\n('X', 'done')\n", False, "forged_report"),
        (b"__import__('os').system('true')\n", False, "unreadable_report"),
        (b"('T', 'cmp', 1, ('==',), ('q', 1), ('i', 2))\n('T', 'done',)\n", False, "assertion_failed"),
    ],
    ids=["pass", "false-assertion", "no-assertion", "cut-short", "nothing", "exited", "not-plain",
         "records-after-done", "forged", "code-is-never-run", "unknown-tag"],
)
def test_a_report_is_judged_on_its_records_alone(report, passed, reason):
    assert judge_report(report, "T") == (passed, reason)
