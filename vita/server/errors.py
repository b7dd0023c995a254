"""Errors in OpenAI's wire shape: `{"error": {"message", "type", "param", "code"}}` with the right HTTP status.

`APIError` is raised anywhere in the server; `error_body` renders one. Types follow OpenAI's:
invalid_request_error (400, 404, 413, 415), authentication_error (401), rate_limit_error / server_busy (429),
server_error (500: a fixed message, never a traceback).
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def limit_exceeded(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param, code="limit_exceeded")


INTERNAL = APIError(500, "internal server error (the server log has the details)", type="server_error",
                    code="internal_error")
