"""The envelope every tool returns, and the closed set of error codes.

Success: ``{success: true, data, tenant_id, schema, warnings, timing_ms}``.
Failure: ``{success: false, error: {code, message, detail}, tenant_id, schema, warnings, timing_ms}``
with the MCP error flag set. Codes are documented in docs/tools.md; a test keeps
the two in step.
"""

from __future__ import annotations

import json
from typing import Any, Generic, Literal, TypeVar

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field

ERROR_CODES: dict[str, str] = {
    "VALIDATION_ERROR": "An argument is missing, malformed or out of range, or the SQL was refused; the message says which and how to fix it.",
    "UNAUTHENTICATED": "The caller's CommCare credential was refused or has expired; sign in again.",
    "FORBIDDEN": "The tenant is not one of the caller's CommCare project spaces, or PostgreSQL refused the access.",
    "NOT_FOUND": "The tenant, table, run or pipeline does not exist.",
    "NO_DATA": "The tenant has no published data yet; call run_materialization first.",
    "CONFLICT": "A materialization of the tenant is already in progress; wait for it or cancel it.",
    "QUERY_TIMEOUT": "The query ran past the statement timeout and was stopped; narrow it or aggregate.",
    "UPSTREAM_UNAVAILABLE": "CommCare could not be reached to verify the caller; try again later.",
    "RATE_LIMITED": "The caller has as many calls in progress as allowed; wait for one to finish, then try again.",
    "INTERNAL_ERROR": "Something failed inside the gateway; the message says what, the server log has details.",
}
ErrorCode = Literal[
    "VALIDATION_ERROR", "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "NO_DATA", "CONFLICT",
    "QUERY_TIMEOUT", "UPSTREAM_UNAVAILABLE", "RATE_LIMITED", "INTERNAL_ERROR",
]


class ToolFailure(Exception):
    """Raised inside a tool: becomes the error envelope."""

    def __init__(self, code: ErrorCode, message: str, detail: dict[str, Any] | None = None):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or {}


class ErrorInfo(BaseModel):
    code: ErrorCode = Field(description="One of the documented error codes.")
    message: str = Field(description="What went wrong and what to do next.")
    detail: dict[str, Any] = Field(default_factory=dict, description="Structured specifics, when any.")


T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    model_config = ConfigDict(populate_by_name=True)

    success: bool = Field(description="True when the tool did what was asked.")
    data: T | None = Field(default=None, description="The result, when success is true.")
    error: ErrorInfo | None = Field(default=None, description="Why it failed, when success is false.")
    tenant_id: str | None = Field(default=None, description="The CommCare project space the call acted on.")
    schema_name: str | None = Field(default=None, alias="schema", description="The PostgreSQL schema of that tenant.")
    warnings: list[str] = Field(default_factory=list, description="Things worth knowing that did not stop the call.")
    timing_ms: int = Field(default=0, description="Time the call took inside the gateway.")


def to_result(envelope: Envelope) -> CallToolResult:
    """The MCP result: structured content, the same as JSON text, and the error flag."""
    payload = envelope.model_dump(mode="json", by_alias=True)
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(payload, ensure_ascii=False, default=str))],
        structured_content=payload,
        is_error=not envelope.success,
    )
