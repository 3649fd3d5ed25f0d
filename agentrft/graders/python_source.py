"""`python` grader with `source`: untrusted code defining `grade(sample, item) -> float`, sandboxed.

Config (OpenAI's shape)::

    {"type": "python", "name": "exact", "pass_threshold": 0.5,
     "source": "def grade(sample, item):\\n"
               "    return float(sample['output_text'] == item['answer'])"}

`image_tag` is accepted and ignored (recorded in `metadata.scores`). Source over 256 KiB or
that does not compile is a SpecError at build time.

Each grade() runs `_RUNNER` in a fresh `ProcessSandbox` (see `agentrft.sandbox.process` for
what it isolates): sample, item and source go in as JSON on stdin; the runner execs the source, calls
`grade`, and prints one result line, prefixed with a per-call random tag, on stdout. Whatever
the user's code prints goes to stderr, so it cannot break the parsing. (The tag stops stray
lines, not forgery: code that grade() runs in its own process, say a model's answer it execs,
can print a result of its own. Run such code in a child process if the score matters.)
The code may read what any local user may read (e.g. /etc/passwd), not root's files.

Outcomes (grade() never raises):
- a number (bool and int included): the reward, clipped to [0, 1]; the raw value in
  `metadata.scores.raw`. `{"reward": x, "sub_rewards": {name: y}}` is accepted too;
- an exception in the code, no `grade`, a non-number, NaN/inf, a limit hit (CPU, memory,
  processes, wall clock, output), a crash or garbage output: `python_grader_runtime_error`,
  with a one-line reason in `python_grader_runtime_error_details`. The flag is in
  DISCARD_FLAGS: the loop discards the rollout rather than score it 0;
- the sandbox cannot start at all: `python_grader_server_error`.

Example::

    grader = PythonSourceGrader(name="short", limits=PYTHON_GRADER_LIMITS.with_(cpu_seconds=5),
                                source="def grade(s, i): return len(s['output_text']) < 100")
    result = await grader.grade(sample, item, trace_id)
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import signal
import sys
import time
from typing import Any

from agentrft.errors import SpecError
from agentrft.graders.base import Grader, GraderResult
from agentrft.graders.config import GraderConfig, Number, read_config
from agentrft.sandbox.limits import PYTHON_GRADER_LIMITS, SandboxLimits
from agentrft.sandbox.process import ProcessSandbox, SandboxResult, default_sandbox

log = logging.getLogger(__name__)

MAX_SOURCE_BYTES = 256 * 1024
RUNTIME, SERVER = "python_grader_runtime_error", "python_grader_server_error"

_RUNNER = r"""
import json, numbers, os, sys, traceback

def plain(value):
    return float(value) if isinstance(value, numbers.Real) else repr(value)[:200]

def main():
    request = json.loads(sys.stdin.buffer.read())
    tag, pid = request["tag"], os.getpid()
    results, sys.stdout = sys.stdout, sys.stderr

    def report(obj):
        if os.getpid() != pid:
            os._exit(1)  # a process forked by grade() must not answer for it
        results.write(tag + json.dumps(obj, default=plain) + "\n")
        results.flush()

    try:
        namespace = {"__name__": "__grader__"}
        exec(compile(request["source"], "<grader>", "exec"), namespace)
        grade = namespace.get("grade")
        if not callable(grade):
            return report({"error": "the source defines no function grade(sample, item)"})
        report({"value": grade(request["sample"], request["item"])})
    except BaseException as exc:
        line = traceback.format_exception_only(type(exc), exc)[-1].strip()
        report({"error": line, "traceback": traceback.format_exc()[-2000:]})

main()
"""


class PythonSourceGrader(Grader):
    type = "python"

    def __init__(self, name: str, source: str, *, pass_threshold: float | None = None,
                 image_tag: str | None = None, limits: SandboxLimits | None = None,
                 sandbox: ProcessSandbox | None = None):
        size = len(source.encode())
        if size > MAX_SOURCE_BYTES:
            raise SpecError(f"source is {size} bytes; the limit is {MAX_SOURCE_BYTES} (256 KiB)",
                            field="grader.source")
        try:  # parsing only, nothing runs: a typo surfaces when the job is built
            compile(source, "<grader>", "exec")
        except (SyntaxError, ValueError) as exc:
            where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
            raise SpecError(f"source does not compile: {exc.__class__.__name__}: "
                            f"{getattr(exc, 'msg', exc)}{where}", field="grader.source") from exc
        self.name, self.source = name, source
        self.pass_threshold, self.image_tag = pass_threshold, image_tag
        self.limits = limits or PYTHON_GRADER_LIMITS
        self.sandbox = sandbox or default_sandbox()
        # -s -P, not -I: the sandbox sets the environment (the fallback relies on PYTHONHOME)
        self._argv = [sys.executable, "-s", "-P", "-c", _RUNNER]

    async def grade(self, sample: dict[str, Any], item: dict[str, Any],
                    trace_id: str) -> GraderResult:
        start = time.perf_counter()
        tag = f"@@grade-{secrets.token_hex(8)}@@"
        try:
            request = json.dumps({"tag": tag, "source": self.source, "sample": sample,
                                  "item": item}, default=str).encode()
            result = await self.sandbox.run(self._argv, request, self.limits)
        except Exception as exc:  # the sandbox broke, not the user's code
            log.exception("python grader %r: sandbox failed [trace_id=%s]", self.name, trace_id)
            return self._error(SERVER, f"sandbox_error: {type(exc).__name__}: {exc}", start)
        if not result.started:
            return self._error(SERVER, "sandbox_start_failed: " + _last_line(result.stderr), start)

        answer = _answer(result.stdout, tag)
        if answer is None:
            return self._error(RUNTIME, _why_no_answer(result, self.limits), start)
        if "error" in answer:
            return self._error(RUNTIME, _with_hint(str(answer["error"]), self.limits), start)
        try:
            raw, sub_rewards = _score(answer.get("value"))
        except ValueError as exc:
            return self._error(RUNTIME, str(exc), start)
        reward = min(1.0, max(0.0, raw))
        scores: dict[str, Any] = {"raw": raw}
        if self.image_tag is not None:
            scores["image_tag"] = self.image_tag
        passed = None if self.pass_threshold is None else reward >= self.pass_threshold
        return GraderResult.make(reward, name=self.name, type=self.type, scores=scores,
                                 sub_rewards=sub_rewards, passed=passed,
                                 execution_time=time.perf_counter() - start)

    def _error(self, flag: str, detail: str, start: float) -> GraderResult:
        log.debug("python grader %r: %s: %s", self.name, flag, detail)
        return GraderResult.error(flag, name=self.name, type=self.type, detail=detail[:500],
                                  execution_time=time.perf_counter() - start)


class PythonSourceConfig(GraderConfig):
    """`{"type": "python", "name", "source", "pass_threshold"?, "image_tag"?}`."""

    name: str
    source: str
    pass_threshold: Number | None = None
    image_tag: str = None  # type: ignore[assignment]  # absent is None; a written null is wrong


def from_config(config: dict[str, Any]) -> PythonSourceGrader:
    typed = read_config(PythonSourceConfig, config)
    return PythonSourceGrader(name=typed.name, source=typed.source,
                              pass_threshold=typed.pass_threshold, image_tag=typed.image_tag)


def _answer(stdout: bytes, tag: str) -> dict[str, Any] | None:
    """The runner's result: the last tagged line, if it parses."""
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        if line.startswith(tag):
            try:
                answer = json.loads(line[len(tag):])
            except ValueError:
                return None
            return answer if isinstance(answer, dict) else None
    return None


def _score(value: Any) -> tuple[float, dict[str, float]]:
    """grade()'s return value as (raw reward, sub_rewards); ValueError says what is wrong."""
    if isinstance(value, dict):
        if set(value) - {"reward", "sub_rewards"} or "reward" not in value:
            raise ValueError(f"grade() returned a dict with keys {sorted(value)}; expected "
                             f"'reward' and optionally 'sub_rewards'")
        subs = value.get("sub_rewards") or {}
        if not isinstance(subs, dict):
            raise ValueError(f"grade() returned sub_rewards of type {type(subs).__name__}; "
                             f"expected a dict")
        return (_number(value["reward"], "reward"),
                {str(k): _number(v, f"sub_rewards[{k!r}]") for k, v in subs.items()})
    return _number(value, "its result"), {}


def _number(value: Any, what: str) -> float:
    if not isinstance(value, (int, float)):  # JSON: bool is an int; str, list, None are not
        raise ValueError(f"grade() returned {json.dumps(value)[:100]} as {what}, not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"grade() returned {what} = {number}; expected a finite number")
    return number


def _with_hint(error: str, limits: SandboxLimits) -> str:
    """Name the limit behind errors that a limit causes."""
    if error.split(":")[0].endswith("MemoryError"):  # numpy's _ArrayMemoryError too
        return f"{error} (memory limit {limits.memory_bytes // 2**20} MB)"
    if "Resource temporarily unavailable" in error:
        return f"{error} (process limit {limits.max_processes})"
    if error.startswith("OSError: [Errno 27]"):
        return f"{error} (file size limit {limits.tmp_bytes // 2**20} MB)"
    return error


def _why_no_answer(result: SandboxResult, limits: SandboxLimits) -> str:
    if result.limit == "wall_seconds":
        return f"wall-clock limit of {limits.wall_seconds:g} s exceeded"
    if result.limit == "output_bytes":
        return f"output limit of {limits.output_bytes} bytes exceeded"
    sig = result.signal
    if sig == signal.SIGXCPU:
        return f"CPU time limit of {limits.cpu_seconds} s exceeded (SIGXCPU)"
    if sig == signal.SIGKILL:
        return "killed by SIGKILL (CPU time hard limit or out of memory)"
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
        return f"killed by {name} (a crash; the memory limit is {limits.memory_bytes // 2**20} MB)"
    last = _last_line(result.stderr)
    return (f"exited with status {result.exit_code} without a result"
            + (f": {last}" if last else ""))


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
