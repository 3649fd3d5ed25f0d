"""`string_check`: compare two rendered templates, OpenAI's semantics.

    eq     input == reference
    ne     input != reference
    like   reference in input                    (case-sensitive contains)
    ilike  reference.lower() in input.lower()    (case-insensitive contains)

Reward is 1.0 or 0.0. A template naming a variable the rollout lacks scores 0.0 with
`invalid_variable_error` set, as OpenAI does: it is a fact about this sample (e.g. the
model made no tool call, so `sample.output_tools[0]` is missing), not an infrastructure
failure, so the rollout still counts.

Example::

    StringCheckGrader(name="exact", input="{{sample.output_text}}",
                      reference="{{item.answer}}", operation="eq")
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Callable

from agentrft.errors import SpecError
from agentrft.graders.base import Grader, GraderResult
from agentrft.graders.config import GraderConfig, one_of
from agentrft.templates import TemplateVariableError, render_template

OPERATIONS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda inp, ref: inp == ref,
    "ne": lambda inp, ref: inp != ref,
    "like": lambda inp, ref: ref in inp,
    "ilike": lambda inp, ref: ref.lower() in inp.lower(),
}


class StringCheckConfig(GraderConfig):
    """`{"type": "string_check", "name", "input", "reference", "operation"}`, all strings."""

    name: str
    input: str
    reference: str
    operation: Annotated[str, one_of(OPERATIONS, "unknown operation {value!r} (expected one "
                                                 "of {allowed})")]


class StringCheckGrader(Grader):
    type = "string_check"

    def __init__(self, name: str, input: str, reference: str, operation: str):
        if operation not in OPERATIONS:
            raise SpecError(f"unknown operation {operation!r} (expected one of "
                            f"{', '.join(OPERATIONS)})", field="grader.operation")
        self.name, self.input, self.reference, self.operation = name, input, reference, operation

    async def grade(self, sample: dict[str, Any], item: dict[str, Any], trace_id: str) -> GraderResult:
        start = time.perf_counter()
        try:
            inp = render_template(self.input, sample, item)
            ref = render_template(self.reference, sample, item)
        except TemplateVariableError:
            return GraderResult.make(0.0, name=self.name, type=self.type,
                                     errors={"invalid_variable_error": True},
                                     execution_time=time.perf_counter() - start)
        reward = 1.0 if OPERATIONS[self.operation](inp, ref) else 0.0
        return GraderResult.make(reward, name=self.name, type=self.type,
                                 execution_time=time.perf_counter() - start)
