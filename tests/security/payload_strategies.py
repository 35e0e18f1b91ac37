"""Hypothesis strategies for hostile socket payloads, one per event of ``CLIENT_EVENTS``.

Each event gets its valid-ish shape (the fields the contract lists, with plausible values and the
real ids of a board the fuzzing user owns, so cases reach boards and Postgres), mutated field by
field into hostile values, plus arbitrary JSON. An event added to ``CLIENT_EVENTS`` without a
shape here is still fuzzed, with the union of every known field.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

#: Required and optional fields per event (CONTRACT §4, docs/decisions.md); values from ``_field``.
SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "join_board": (("board_id", "organization_id"), ("division_id", "since_seq")),
    "leave_board": (("board_id",), ()),
    "list_boards": (("organization_id",), ("division_id",)),
    "user_presence": (("board_id", "status"), ()),
    "user_typing": (("board_id", "is_typing"), ("task_id",)),
    "user_cursor": (("board_id", "x", "y"), ("task_id",)),
    "refresh_token": (("token",), ()),
    "task_created": (("board_id", "column_id", "title"), ("description", "position", "id", "due_date", "labels")),
    "task_moved": (("board_id", "task_id", "to_column_id", "position"), ("from_column_id", "expected_version")),
    "task_updated": (("board_id", "task_id", "changes"), ("expected_version",)),
    "task_deleted": (("board_id", "task_id"), ()),
    "task_assigned": (("board_id", "task_id", "assignee_ids"), ()),
    "task_commented": (("board_id", "task_id", "body"), ()),
    "board_updated": (("board_id", "changes"), ()),
    "column_updated": (("board_id", "column_id", "changes"), ()),
    "column_reordered": (("board_id", "column_ids"), ()),
}
ENVELOPE = ("client_op_id", "correlation_id", "traceparent")
ALL_FIELDS = tuple(sorted({name for required, optional in SHAPES.values() for name in (*required, *optional)}))

#: Integers at every boundary the stack has: int32 (positions, versions), bigint (seq), u64, beyond.
BOUNDARY_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30]
SURROGATES = ["\ud83d", "\udc00", "cut \ud83d", "\ud800\ud800", "\udfff end"]


def hostile_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]),
        st.sampled_from(BOUNDARY_INTS),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.sampled_from(SURROGATES),
        st.sampled_from(["", "\x00", "a\x00b", " ", "\u2028", "\ufeff", "null", "<script>", "../../etc", "%00"]),
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=True, allow_infinity=True),
    )


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Arbitrary JSON (with NaN, Infinity and lone surrogates: what a client can put on the wire)."""
    return st.recursive(
        hostile_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=6), st.dictionaries(st.text(max_size=12), children, max_size=6)
        ),
        max_leaves=max_leaves,
    )


def big_values() -> st.SearchStrategy[Any]:
    """Huge arrays and strings around the 64 KiB message cap, and deep nesting."""
    return st.one_of(
        st.integers(min_value=0, max_value=20_000).map(lambda n: [0] * n),
        st.integers(min_value=0, max_value=70_000).map(lambda n: "x" * n),
        st.integers(min_value=1, max_value=400).map(_nested),
        st.integers(min_value=1, max_value=3000).map(lambda n: {f"k{i}": i for i in range(n)}),
    )


def _nested(depth: int) -> Any:
    value: Any = 1
    for index in range(depth):
        value = [value] if index % 2 else {"a": value}
    return value


def _field(name: str, ids: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Plausible values for ``name`` (the board's real ids among them)."""
    real = st.sampled_from(ids.get(name) or [None])
    generic_id = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
    words = st.text(alphabet=st.characters(categories=["L", "N", "Zs", "So"]), min_size=1, max_size=40)
    text = st.one_of(words, words, st.text(max_size=60))
    plausible: dict[str, st.SearchStrategy[Any]] = {
        "since_seq": st.one_of(st.integers(0, 50), st.sampled_from(BOUNDARY_INTS)),
        "status": st.sampled_from(["online", "away", "offline", "ONLINE"]),
        "is_typing": st.booleans(),
        "x": st.floats(-2e9, 2e9),
        "y": st.floats(-2e9, 2e9),
        "token": text,
        "title": text,
        "description": text,
        "body": text,
        "position": st.one_of(st.integers(0, 10), st.sampled_from(BOUNDARY_INTS)),
        "expected_version": st.one_of(st.integers(0, 5), st.sampled_from(BOUNDARY_INTS)),
        "due_date": st.sampled_from(["2026-01-31", "0000-01-01", "9999-12-31", "2026-02-30", "2026-01-31T00:00:00Z"]),
        "labels": st.lists(text, max_size=25),
        "assignee_ids": st.lists(st.one_of(real, generic_id), max_size=55),
        "column_ids": st.one_of(st.just(ids.get("column_ids", [])), st.lists(st.one_of(real, generic_id), max_size=5)),
        "changes": st.one_of(
            st.fixed_dictionaries({"name": text}),
            st.fixed_dictionaries(
                {"title": text}, optional={"description": text, "labels": st.lists(text, max_size=3)}
            ),
            st.fixed_dictionaries({"wip_limit": st.one_of(st.integers(0, 10), st.sampled_from(BOUNDARY_INTS))}),
            st.fixed_dictionaries(
                {},
                optional={
                    "name": text,
                    "title": text,
                    "due_date": st.sampled_from(["2026-01-31", "31/01/2026"]),
                    "wip_limit": st.none(),
                },
            ),
        ),
    }
    if name in ids:  # mostly the board's real ids, so cases get past "not found" into boards
        return st.one_of(real, real, real, plausible.get(name, generic_id))
    return plausible.get(name, generic_id)


def payloads(event: str, ids: dict[str, Any]) -> st.SearchStrategy[Any]:
    """One event's payload: its shape mutated (most cases), arbitrary JSON, or something huge."""
    required, optional = SHAPES.get(event, (("board_id",), ALL_FIELDS))

    def value(name: str) -> st.SearchStrategy[Any]:
        """Mostly plausible: a case with one hostile field among plausible ones goes deepest."""
        plausible = _field(name, ids)
        return st.one_of(plausible, plausible, plausible, plausible, plausible, hostile_scalars(), json_values(6))

    shaped = st.fixed_dictionaries(
        {name: value(name) for name in required},
        optional={
            **{name: value(name) for name in optional},
            **{
                name: st.one_of(*[st.from_regex(r"\A[A-Za-z0-9._:-]{1,128}\Z")] * 3, hostile_scalars())
                for name in ENVELOPE
            },
            "extra": json_values(),
        },
    )
    return st.one_of(
        _mutated(event, ids),
        _mutated(event, ids),
        shaped,
        json_values(),
        big_values().map(lambda big: {**ids["base"], "x": big}),
    )


@st.composite
def _mutated(draw: st.DrawFn, event: str, ids: dict[str, Any]) -> dict[str, Any]:
    """A plausible payload (a quarter of them left so, to reach boards and Postgres) with one
    field replaced by something hostile."""
    required, optional = SHAPES.get(event, (("board_id",), ALL_FIELDS))
    payload = {name: draw(_field(name, ids)) for name in required}
    for name in optional:
        if draw(st.booleans()):
            payload[name] = draw(_field(name, ids))
    if draw(st.integers(0, 3)) == 0:
        return payload
    target = draw(st.sampled_from([*required, *optional, *ENVELOPE, "extra"]))
    payload[target] = draw(st.one_of(hostile_scalars(), json_values(6), big_values()))
    return payload


def cases(events: list[str], ids: dict[str, Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """``(event, payload)`` over every event."""
    return st.one_of([st.tuples(st.just(event), payloads(event, ids)) for event in sorted(events)])
