"""FinQA-lite's grader: the numeric answer, plus a little credit for finding the right reports.

    reward = 0.8 × answer + 0.2 × found

`answer` is the numeric grader (1 for a match up to formatting, 0.5 within 0.1%); `found` is
the share of the question's source reports that showed up in the rollout's tool results, a
signal that survives when the final arithmetic is wrong, so a small model has a gradient
towards searching well before it answers well.
"""

from __future__ import annotations

from typing import Any

GRADER: dict[str, Any] = {
    "type": "multi", "name": "finqa", "calculate_output": "0.8 * answer + 0.2 * found",
    "graders": {
        "answer": {"type": "python", "name": "answer", "callable": "examples.graders.numeric:grade"},
        "found": {"type": "python", "name": "found",
                  "callable": "examples.finqa_lite.grading:found_sources"},
    },
}


def found_sources(sample: dict, item: dict) -> float:
    paths = item.get("source_paths") or []
    if not paths:
        return 0.0
    seen = " ".join(str(c.get("output", "")) + " " + str(c.get("arguments", ""))
                    for c in sample.get("trajectory", {}).get("tool_calls", []) if not c.get("is_error"))
    return sum(p in seen for p in paths) / len(paths)
