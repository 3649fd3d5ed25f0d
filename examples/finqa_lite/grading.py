"""FinQA-lite's grader: the numeric answer, plus a little credit for finding the right reports.

    reward = 0.8 × answer + 0.2 × found

`answer` is the numeric grader (1 for a match up to formatting, 0.5 within 0.1%); `found` is
the share of the question's source reports that showed up in the rollout's tool results, a
signal that survives when the final arithmetic is wrong, so a small model has a gradient
towards searching well before it answers well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

def _job_grader() -> dict[str, Any]:
    job = Path(__file__).with_name("job.yaml")
    return yaml.safe_load(job.read_text(encoding="utf-8"))["method"]["reinforcement"]["grader"]


GRADER: dict[str, Any] = _job_grader()  # as job.yaml declares it (one place to change it)


def found_sources(sample: dict, item: dict) -> float:
    paths = item.get("source_paths") or []
    if not paths:
        return 0.0
    seen = " ".join(str(c.get("output", "")) + " " + str(c.get("arguments", ""))
                    for c in sample.get("trajectory", {}).get("tool_calls", []) if not c.get("is_error"))
    return sum(p in seen for p in paths) / len(paths)
