"""chancy's JSON encoding (kwargs, meta, results): the text of the stdlib encoder, faster.

``json_dumps`` and ``jsonb_dumps`` reuse one C encoder instead of building one per call
(``chancy.utils._one_shot``); nothing about what they accept or write may change.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
import threading
import uuid
from typing import Any

import pytest

from chancy.utils import _default, json_dumps, jsonb_dumps


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


def stdlib(obj: Any, *, allow_nan: bool = True) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_default, allow_nan=allow_nan)


CASES: list[Any] = [
    {"n": 1},
    {},
    [],
    "plain",
    "é and \u2028",
    None,
    True,
    0,
    -(10**30),
    1.5,
    1e300,
    [1, 2.5, "tab\there", {"nested": [None, False, {"deep": "x"}]}],
    {1: "int key", 2.5: "float key", None: "null key", False: "bool key"},
    {"when": datetime.datetime(2026, 12, 6, 11, 0, tzinfo=datetime.UTC)},
    {"day": datetime.date(2026, 12, 6), "naive": datetime.datetime(2026, 1, 1, 1, 2, 3, 4)},
    {"id": uuid.UUID(int=7), "tags": {"b", "a"}, "frozen": frozenset({3, 1})},
    {"level": Level.HIGH},
    ("a", "tuple"),
]


@pytest.mark.parametrize("obj", CASES, ids=range(len(CASES)))
def test_the_text_is_the_stdlib_encoders(obj: Any) -> None:
    assert json_dumps(obj) == stdlib(obj)
    assert jsonb_dumps(obj) == stdlib(obj, allow_nan=False)


def test_what_the_stdlib_refuses_is_refused_the_same_way() -> None:
    with pytest.raises(TypeError, match="Color is not JSON serializable"):
        json_dumps({"c": Color.RED})
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        jsonb_dumps([object()])
    with pytest.raises(ValueError, match="Out of range float"):
        jsonb_dumps({"x": math.nan})
    assert json_dumps({"x": math.inf}) == '{"x":Infinity}'  # json_dumps allows them, as before
    looped: list[Any] = []
    looped.append(looped)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    for obj in (looped, cyclic):
        with pytest.raises(ValueError, match="Circular reference"):
            json_dumps(obj)
        with pytest.raises(ValueError, match="Circular reference"):
            jsonb_dumps(obj)


def test_threads_share_the_encoder() -> None:
    # The encoder is shared (push_many encodes the next batch in a thread); a dict of
    # markers shared between calls would make one thread see another's objects as cycles.
    shared = {"k": [{"v": i} for i in range(50)]}
    failures: list[BaseException] = []

    def encode() -> None:
        try:
            for _ in range(2000):
                assert jsonb_dumps(shared) == stdlib(shared, allow_nan=False)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=encode) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
