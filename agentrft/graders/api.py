"""The grader API used by `agentrft graders run|validate` and the HTTP graders endpoints.

`run_grader` never raises for anything a sample or item contains: every outcome is a result
in OpenAI's graders-run shape, with an error flag where grading failed. Only a grader config
that cannot be built raises, as `SpecError` naming the field (that is `validate_grader`).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from agentrft.errors import GraderError, SpecError
from agentrft.graders.base import Grader, GraderResult
from agentrft.graders.build import build_grader


def normalize_sample(sample: Any) -> dict[str, Any]:
    """A plain string is `output_text`; missing sample fields get their empty values.

    Raises ValueError for anything that is neither a string nor an object."""
    if isinstance(sample, str):
        sample = {"output_text": sample}
    if not isinstance(sample, dict):
        raise ValueError(f"a sample must be a string or an object, got {type(sample).__name__}")
    out = dict(sample)
    text = out.get("output_text")
    if text is None:
        out["output_text"] = ""
    elif not isinstance(text, str):
        raise ValueError("sample.output_text must be a string")
    if "output_json" not in out:
        try:
            out["output_json"] = json.loads(out["output_text"])
        except (json.JSONDecodeError, ValueError):
            out["output_json"] = None
    out.setdefault("output_tools", [])
    out.setdefault("choices", [{"index": 0, "message": {"role": "assistant",
                                                         "content": out["output_text"]}}])
    out.setdefault("output_reasoning_summary", None)
    out.setdefault("trajectory", {"messages": [], "tool_calls": [], "status": "completed"})
    return out


def validate_grader(config: Any) -> Grader:
    """Build the grader or raise SpecError naming the field."""
    return build_grader(config)


async def grade_safely(grader: Grader, sample: Any, item: Any, trace_id: str | None = None
                       ) -> GraderResult:
    """Grade without raising: a bad sample is `sample_parse_error`, a grader that fails is
    flagged (the rollout loop discards such results; see base.DISCARD_FLAGS)."""
    t0 = time.perf_counter()
    trace_id = trace_id or f"trace_{uuid.uuid4().hex}"
    try:
        sample = normalize_sample(sample)
    except ValueError as e:
        return GraderResult.error("sample_parse_error", name=grader.name, type=grader.type,
                                  detail=str(e), execution_time=time.perf_counter() - t0)
    if item is None:
        item = {}
    if not isinstance(item, dict):
        return GraderResult.error("sample_parse_error", name=grader.name, type=grader.type,
                                  detail="item must be an object",
                                  execution_time=time.perf_counter() - t0)
    try:
        return await grader.grade(sample, item, trace_id)
    except GraderError as e:
        return GraderResult.error("python_grader_runtime_error" if grader.type == "python"
                                  else "other_error", name=grader.name, type=grader.type,
                                  detail=str(e), execution_time=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - a grader bug must not take the API down
        return GraderResult.error("other_error", name=grader.name, type=grader.type,
                                  detail=f"{type(e).__name__}: {e}",
                                  execution_time=time.perf_counter() - t0)


async def run_grader(config: Any, sample: Any, item: Any = None, trace_id: str | None = None
                     ) -> dict[str, Any]:
    """Build and run a grader once; OpenAI's graders-run response as a dict."""
    grader = validate_grader(config)
    return (await grade_safely(grader, sample, item, trace_id)).to_dict()


__all__ = ["SpecError", "grade_safely", "normalize_sample", "run_grader", "validate_grader"]
