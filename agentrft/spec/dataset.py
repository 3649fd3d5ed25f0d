"""Dataset rows (JSONL): `{"messages": [...], "tools": [...], ...reference data}`.

`messages` and `tools` are reserved; every other key is reference data that graders
see as `{{item.x}}` and tools receive as `item`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentrft.errors import SpecError
from agentrft.spec.errors import spec_error_from


class FunctionSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"] = "function"
    function: FunctionSchema


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: str | dict[str, Any]


class MessageToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None


class DatasetRow(BaseModel):
    """One task. Extra keys are kept: they are the reference data."""

    model_config = ConfigDict(extra="allow")
    messages: list[Message] = Field(min_length=1)
    tools: list[ToolSchema] = Field(default_factory=list)

    @property
    def item(self) -> dict[str, Any]:
        """The row without messages/tools: what graders and tools get as `item`."""
        return dict(self.model_extra or {})

    def messages_as_dicts(self) -> list[dict[str, Any]]:
        return [m.model_dump(exclude_none=True) for m in self.messages]

    def tools_as_dicts(self) -> list[dict[str, Any]]:
        return [t.model_dump(exclude_none=True) for t in self.tools]


def load_dataset(path: str | Path) -> list[DatasetRow]:
    """Read a JSONL file; any bad line raises SpecError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("dataset file not found", file=str(path))
    rows: list[DatasetRow] = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SpecError(f"not UTF-8 text (byte {e.start})", file=str(path), line=lineno) from None
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise SpecError(f"invalid JSON: {e.msg} at column {e.colno}", file=str(path),
                                line=lineno) from None
            if not isinstance(data, dict):
                raise SpecError(f"a row must be a JSON object, got {type(data).__name__}",
                                file=str(path), line=lineno)
            try:
                rows.append(DatasetRow.model_validate(data))
            except ValidationError as e:
                raise spec_error_from(e, file=str(path), line=lineno) from None
    if not rows:
        raise SpecError("dataset is empty", file=str(path))
    return rows
