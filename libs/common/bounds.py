"""What Postgres can store, as validators for the payload models: refuse at the edge (400
``invalid_payload``) what the database would refuse later with a 500.

Python has unbounded integers, any code point in ``str`` and datetimes with any offset; Postgres
has ``bigint``/``integer``, text without NUL and valid UTF-8 only, and timestamps it converts to
UTC. Every model field that reaches a query uses these, so a new field cannot forget one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StrictInt

PG_BIGINT_MAX = 2**63 - 1
PG_INT_MAX = 2**31 - 1
#: UTF-16 surrogates: a JSON ``\\ud83d`` without its pair decodes to one; UTF-8 cannot encode it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(value: str) -> str:
    """Text Postgres can hold: no NUL (text and jsonb refuse it), no lone surrogate (not UTF-8)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if _SURROGATE.search(value):
        raise ValueError("must not contain lone UTF-16 surrogates (a character cut in half)")
    return value


def utc_timestamp(value: datetime) -> datetime:
    """An aware datetime in UTC (naive ones are taken as UTC); out of range once in UTC is refused.

    ``0001-01-01T00:00+14:00`` is a valid ISO 8601 time that is before year 1 in UTC: converting
    it here turns what would be an encoder overflow in the driver into a validation error.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a time between years 1 and 9999 in UTC") from None


#: A non-negative ``bigint`` (sequence numbers, row ids, cursors).
BigSerial = Annotated[StrictInt, Field(ge=0, le=PG_BIGINT_MAX)]
StorableText = AfterValidator(storable_text)
