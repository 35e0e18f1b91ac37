"""Error codes of the contract and the one exception type that carries them.

Handlers raise ``ApiError``; the web middleware and the socket namespace turn it into
``{"error": {"code", "message"}}`` with the right status, so no handler formats errors itself.
"""

from __future__ import annotations

from typing import Any

#: Contract error code -> HTTP status.
STATUS_BY_CODE: dict[str, int] = {
    "invalid_payload": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "version_conflict": 409,
    "room_full": 409,
    "too_many_rooms": 409,
    "resync_required": 410,
    "payload_too_large": 413,
    "rate_limited": 429,
    "server_full": 503,
    "internal": 500,
    "unavailable": 503,
}


class ApiError(Exception):
    """An error the client is meant to see: a contract code, a message, optional details.

    ``audit`` is for the audit log only, never for the client: set by ``hidden`` on a
    ``not_found`` that hides something the caller may not see, so the refusal is still recorded.
    """

    audit: dict[str, Any] | None = None
    #: True once a service's audit feed recorded this refusal (a relayed error is not recorded twice).
    reported: bool = False

    def __init__(self, code: str, message: str, *, status: int | None = None, **details: Any) -> None:
        if code not in STATUS_BY_CODE and status is None:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE[code]
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code!r}, {self.message!r})"


def invalid(message: str, **details: Any) -> ApiError:
    return ApiError("invalid_payload", message, **details)


def not_found(what: str) -> ApiError:
    return ApiError("not_found", f"{what} not found")


#: The one answer for a client-chosen id that is already taken, whoever took it: ids are chosen by
#: their creator, so "taken" tells nothing about another tenant's data (docs/security.md).
ID_TAKEN = "this id is already taken; choose another (a random UUID never collides)"


def id_taken() -> ApiError:
    return ApiError("conflict", ID_TAKEN)


def hidden(what: str, organization_id: str, **data: Any) -> ApiError:
    """The answer for something that exists but the caller may not see: exactly the ``not_found``
    of a missing one (no existence oracle), recorded as a ``not_visible`` refusal in the audit log
    of the organization that owns it."""
    error = not_found(what)
    error.audit = {"reason": "not_visible", "organization_id": organization_id, **data}
    return error


def unauthorized(message: str = "authentication required", **details: Any) -> ApiError:
    return ApiError("unauthorized", message, **details)
