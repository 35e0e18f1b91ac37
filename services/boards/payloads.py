"""What callers may send: one pydantic model per command, shared by REST and NATS.

The limits live here and only here (CONTRACT: ids ``^[A-Za-z0-9_-]{1,64}$``, title <= 500,
description <= 20,000, <= 20 labels of <= 50 characters, <= 50 assignees, comment <= 10,000).
Types are strict — ``"3"`` is not a position and ``true`` is not a version — because a silently
coerced value is how a bad client moves the wrong card. Unknown keys are ignored: socket payloads
carry transport fields (``board_id``, ``client_op_id``, ``traceparent``...) next to the command's.

REST bodies are the plain models; NATS messages add the ids that REST has in the path
(``*Message`` models, which all carry ``board_id``).
"""

from __future__ import annotations

import contextlib
import re
from datetime import date
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from libs.common.bounds import PG_BIGINT_MAX, StorableText
from libs.common.errors import invalid
from libs.common.ids import ID_PATTERN

CLIENT_OP_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_COLUMNS = 100


def _iso_date(value: Any) -> date:
    """Only ``YYYY-MM-DD`` strings: no timestamps, no datetimes silently cut to a day."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value)
    raise ValueError("must be a date YYYY-MM-DD")


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Id = Annotated[StrictStr, StringConstraints(pattern=ID_PATTERN)]
ClientOpId = Annotated[StrictStr, StringConstraints(pattern=CLIENT_OP_PATTERN)]
Name = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), StorableText]
Title = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), StorableText]
Description = Annotated[StrictStr, StringConstraints(max_length=20_000), StorableText]
Label = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=50), StorableText]
Labels = Annotated[list[Label], Field(max_length=20), AfterValidator(_unique)]
AssigneeIds = Annotated[list[Id], Field(max_length=50), AfterValidator(_unique)]
DueDate = Annotated[date, BeforeValidator(_iso_date)]
CommentBody = Annotated[StrictStr, StringConstraints(min_length=1, max_length=10_000), StorableText]
Position = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
Version = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
WipLimit = Annotated[StrictInt, Field(ge=0, le=100_000)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Changes(Payload):
    """A partial update: only the keys the caller sent count (``null`` clears where allowed)."""

    def sent(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.model_fields_set}
        if not values:
            raise invalid("changes: nothing to change")
        return values


# --- boards and columns ---------------------------------------------------------------------


class CreateBoard(Payload):
    id: Id | None = None
    organization_id: Id
    division_id: Id | None = None
    name: Name
    columns: Annotated[list[Name], Field(max_length=MAX_COLUMNS)] = []


class BoardChanges(Changes):
    name: Name = ""


class UpdateBoard(Payload):
    changes: BoardChanges


class CreateColumn(Payload):
    id: Id | None = None
    name: Name
    position: Position | None = None
    wip_limit: WipLimit | None = None


class ColumnChanges(Changes):
    name: Name = ""
    wip_limit: WipLimit | None = None


class UpdateColumn(Payload):
    changes: ColumnChanges


class ReorderColumns(Payload):
    column_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_COLUMNS)]


# --- cards ----------------------------------------------------------------------------------


class CreateTask(Payload):
    id: Id | None = None
    column_id: Id
    title: Title
    description: Description = ""
    position: Position | None = None
    due_date: DueDate | None = None
    labels: Labels = []
    assignee_ids: AssigneeIds = []


class MoveTask(Payload):
    to_column_id: Id
    position: Position
    expected_version: Version | None = None
    from_column_id: Id | None = None


class CardChanges(Changes):
    title: Title = ""
    description: Description = ""
    due_date: DueDate | None = None
    labels: Labels = []


class UpdateTask(Payload):
    changes: CardChanges
    expected_version: Version | None = None


class CardPatch(CardChanges):
    """``PATCH /v1/cards/{id}``: the changed fields at the top level, plus ``expected_version``."""

    expected_version: Version | None = None

    def as_update(self) -> UpdateTask:
        fields = self.model_fields_set - {"expected_version"}
        changes = CardChanges.model_validate(self.model_dump(mode="json", include=fields))
        return UpdateTask(changes=changes, expected_version=self.expected_version)


class AssignTask(Payload):
    assignee_ids: AssigneeIds


class CommentTask(Payload):
    body: CommentBody


# --- NATS request payloads (the socket events of CONTRACT §4) --------------------------------


class BoardRef(Payload):
    board_id: Id


class TaskRef(BoardRef):
    task_id: Id


class TaskCreatedMessage(BoardRef, CreateTask):
    pass


class TaskMovedMessage(TaskRef, MoveTask):
    pass


class TaskUpdatedMessage(TaskRef, UpdateTask):
    pass


class TaskDeletedMessage(TaskRef):
    pass


class TaskAssignedMessage(TaskRef, AssignTask):
    pass


class TaskCommentedMessage(TaskRef, CommentTask):
    pass


class BoardUpdatedMessage(BoardRef, UpdateBoard):
    pass


class ColumnUpdatedMessage(BoardRef, UpdateColumn):
    column_id: Id


class ColumnReorderedMessage(BoardRef, ReorderColumns):
    pass


class EventsQuery(BoardRef):
    since_seq: Annotated[StrictInt, Field(ge=0, le=PG_BIGINT_MAX)] = 0
    limit: Annotated[StrictInt, Field(ge=1, le=PG_BIGINT_MAX)] = 1000  # above the maximum (1000) is clamped


class BoardListQuery(Payload):
    """``GET /v1/boards?organization_id=&division_id=`` and ``boards.v1.list_boards``."""

    organization_id: Id
    division_id: Id | None = None


class NatsRequest(Payload):
    """The request envelope on ``boards.v1.<command>``."""

    token: Annotated[StrictStr, StringConstraints(min_length=1, max_length=16_384)]
    client_op_id: ClientOpId | None = None
    correlation_id: Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None
    #: The end user's address as realtime saw it (for the security event of a refusal).
    ip: Annotated[StrictStr, StringConstraints(max_length=64)] | None = None
    payload: dict[str, Any]
