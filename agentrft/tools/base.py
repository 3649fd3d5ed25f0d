"""The `ToolClient` protocol: one seam between the agent loop and a team's tools.

A tool client turns one model-written call into one output string. Outcomes:

- a normal output, or a model-caused error (`is_error=True`: a 4xx, bad arguments,
  non-JSON reply), both shown to the model as the tool's output;
- `agentrft.errors.ToolInfraFailure` raised after retries: the rollout is discarded.

Example::

    class Echo(ToolClient):
        name = "echo"
        async def call(self, request: ToolCallRequest) -> ToolOutcome:
            return ToolOutcome(output=request.arguments)
        async def check(self) -> None:
            pass
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCallRequest:
    """One call as it goes on the wire (DESIGN.md: request to a tool endpoint)."""

    id: str  # "fc_…"
    call_id: str  # "call_…"
    name: str
    arguments: str  # a JSON string, as the model wrote it (normalised to JSON)
    trace_id: str  # "trace_…", one per rollout
    item: dict[str, Any] = field(default_factory=dict)  # dataset row without messages/tools


@dataclass(frozen=True)
class ToolOutcome:
    output: str
    is_error: bool = False  # True: the model called it wrong; still shown to the model
    status_code: int | None = None  # HTTP status where there was one
    latency_s: float = 0.0
    retries: int = 0  # attempts before the one that answered (5xx, timeouts, connection errors)


class ToolClient(abc.ABC):
    name: str
    # The OpenAI function-tool schema to offer the model when a dataset row does not describe
    # the tool itself; None: offered by name only. MCP tools take it from the server.
    schema: dict[str, Any] | None = None

    @abc.abstractmethod
    async def call(self, request: ToolCallRequest) -> ToolOutcome:
        """Run one call. Raise ToolInfraFailure when the rollout must be discarded."""

    async def check(self) -> None:
        """Preflight before training starts; raise ToolUnreachable if the tool cannot answer."""

    async def close_trace(self, trace_id: str) -> None:
        """The rollout `trace_id` has ended (completed, truncated, discarded or cancelled):
        release what the tool holds for it, e.g. its sandbox. Called once per rollout and
        tool, also for tools the rollout never called."""

    async def aclose(self) -> None:
        """Release connections."""
