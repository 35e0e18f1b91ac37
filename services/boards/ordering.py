"""Rank keys: the fractional index that orders cards in a column and columns in a board.

Clients speak integer positions; the database keeps a string ``rank`` per row and a position is
just "how many ranks sort before mine". Inserting at a position means choosing a key strictly
between the two neighbours, so a move writes one row and never renumbers the others.

Keys come from ``fractional-indexing`` (David Greenspan's scheme, as used by Figma-style
editors). Its digits are ``0-9A-Za-z`` in ASCII order and keys are plain ASCII, so Python's
``<`` on the keys is exactly the byte order of Postgres's ``COLLATE "C"``: the order we compute
here is the order ``ORDER BY rank`` returns. That is the property that makes the package
suitable; a locale collation would not be.

Repeated inserts into the same gap grow the key (about one character per six inserts), so a
placement whose key would pass ``max_length`` asks for the column to be rebalanced: all keys are
replaced by short evenly spread ones, in the same order.
"""

from __future__ import annotations

from fractional_indexing import generate_key_between, generate_n_keys_between

#: Keys longer than this trigger a rebalance of their column (one ``column_rebalanced`` event).
DEFAULT_MAX_LENGTH = 32


def key_between(before: str | None, after: str | None) -> str:
    """A key sorting strictly after ``before`` and before ``after`` (``None`` = open end)."""
    return generate_key_between(before, after)


def spread(count: int) -> list[str]:
    """``count`` short keys in increasing order, for a fresh column or a rebalance."""
    return generate_n_keys_between(None, None, count)


def is_between(key: str, before: str | None, after: str | None) -> bool:
    return (before is None or before < key) and (after is None or key < after)
