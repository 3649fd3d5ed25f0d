"""The sandboxed `python` source grader: hostile code ends as a runtime error within its limits.

Hostile cases run on both sandboxes: bubblewrap (skipped, with the reason, where it cannot run)
and the plain-subprocess fallback. Network isolation exists only under bubblewrap. Limits are
small (2 s CPU, 256 MB) so the whole file takes seconds; the defaults are the issue's numbers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import time
import uuid

import pytest

from agentrft.errors import SpecError
from agentrft.graders.base import DETAIL_KEYS, ERROR_KEYS
from agentrft.graders.python_source import MAX_SOURCE_BYTES, PythonSourceGrader, from_config
from agentrft.sandbox.limits import PYTHON_GRADER_LIMITS, SandboxLimits
from agentrft.sandbox.process import (DEFAULT_UIDS, BwrapSandbox, SubprocessSandbox, bwrap_problem,
                                      default_sandbox)
from tests.system_parts import require_system

SAMPLE = {"output_text": "Paris", "output_json": None, "output_tools": [], "choices": [],
          "output_reasoning_summary": None, "trajectory": []}
ITEM = {"answer": "Paris"}
LIMITS = PYTHON_GRADER_LIMITS.with_(cpu_seconds=2, memory_bytes=256 * 2**20, max_processes=16,
                                    wall_seconds=10, output_bytes=64 * 1024, tmp_bytes=8 * 2**20)
RUNTIME = "python_grader_runtime_error"


@pytest.fixture(params=["bwrap", "subprocess"])
def sandbox(request):
    if request.param == "subprocess":
        return SubprocessSandbox()
    require_system("bubblewrap", bwrap_problem(shutil.which("bwrap")))
    return default_sandbox()


def make(source: str, sandbox=None, limits: SandboxLimits = LIMITS, **kw) -> PythonSourceGrader:
    return PythonSourceGrader(name="g", source=source, limits=limits, sandbox=sandbox, **kw)


async def grade(grader: PythonSourceGrader, sample=SAMPLE, item=ITEM):
    return await grader.grade(sample, item, "trace_test")


def detail(result) -> str:
    return result.metadata["errors"]["python_grader_runtime_error_details"] or ""


def assert_runtime_error(result, *fragments: str) -> None:
    assert result.raised_flags == [RUNTIME], result.metadata["errors"]
    assert result.reward == 0.0 and result.should_discard
    for fragment in fragments:
        assert fragment in detail(result), detail(result)


def leftover_processes() -> list[int]:
    """Live processes owned by the sandbox uids (there must be none between runs)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) in DEFAULT_UIDS and "Z" not in fields["State"]:
            pids.append(int(entry))
    return pids


# --- normal grading ----------------------------------------------------------------------

async def test_correct_score_and_result_shape():
    grader = make("def grade(sample, item):\n"
                  "    return float(sample['output_text'] == item['answer'])\n")
    result = await grade(grader)
    assert result.reward == 1.0 and result.raised_flags == []
    meta = result.metadata
    assert meta["name"] == "g" and meta["type"] == "python" and meta["scores"]["raw"] == 1.0
    assert set(meta["errors"]) == set(ERROR_KEYS) | set(DETAIL_KEYS)
    assert (await grade(grader, item={"answer": "Lyon"})).reward == 0.0


async def test_dict_return_with_sub_rewards():
    grader = make("def grade(sample, item):\n"
                  "    return {'reward': 0.75, 'sub_rewards': {'format': 1, 'answer': 0.5}}\n")
    result = await grade(grader)
    assert result.reward == 0.75 and result.sub_rewards == {"format": 1.0, "answer": 0.5}


@pytest.mark.parametrize("value,reward", [("3.5", 1.0), ("-2", 0.0), ("True", 1.0)])
async def test_out_of_range_values_are_clipped(value, reward):
    result = await grade(make(f"def grade(sample, item):\n    return {value}\n"))
    assert result.reward == reward and result.raised_flags == []
    assert result.metadata["scores"]["raw"] == float(eval(value))


async def test_numpy_scalar_is_a_number():
    result = await grade(make("import numpy as np\ndef grade(s, i):\n    return np.float32(0.5)\n"))
    assert result.reward == 0.5


async def test_exception_in_user_code_is_a_runtime_error_with_its_last_line():
    result = await grade(make("def grade(sample, item):\n    raise ValueError('boom')\n"))
    assert_runtime_error(result, "ValueError: boom")


@pytest.mark.parametrize("source,fragment", [
    ("x = 1\n", "no function grade"),
    ("def grade(s, i):\n    return 'high'\n", "not a number"),
    ("def grade(s, i):\n    return None\n", "not a number"),
    ("def grade(s, i):\n    return float('nan')\n", "finite"),
    ("def grade(s, i):\n    return {'score': 1}\n", "expected 'reward'"),
    ("import sys\ndef grade(s, i):\n    sys.exit(0)\n", "SystemExit"),
    ("import os\ndef grade(s, i):\n    os._exit(0)\n", "without a result"),
    ("import sys\ndef grade(s, i):\n    sys.__stdout__.write('{\"value\": 1}\\n'); return 1/0\n",
     "ZeroDivisionError"),
])
async def test_bad_outcomes_are_runtime_errors(source, fragment):
    assert_runtime_error(await grade(make(source)), fragment)


async def test_stdout_noise_does_not_break_parsing():
    source = ("import os, sys\n"
              "def grade(sample, item):\n"
              "    print('{\"value\": 0.0}')\n"
              "    sys.__stdout__.write('noise without newline'); sys.__stdout__.flush()\n"
              "    os.write(1, b'{\"value\": 0.1}\\n')\n"
              "    print('x' * 1000)\n"
              "    return 0.25\n")
    assert (await grade(make(source))).reward == 0.25


async def test_oversized_source_and_syntax_errors_are_spec_errors():
    with pytest.raises(SpecError) as info:
        make("def grade(s, i):\n    return 1\n" + "#" * MAX_SOURCE_BYTES)
    assert info.value.field == "grader.source"
    with pytest.raises(SpecError) as info:
        make("def grade(s, i) return 1\n")
    assert info.value.field == "grader.source" and "line 1" in str(info.value)


def test_from_config():
    grader = from_config({"type": "python", "name": "g", "image_tag": "2025-05-08",
                          "pass_threshold": 0.5, "source": "def grade(s, i):\n    return 0.7\n"})
    assert grader.pass_threshold == 0.5 and grader.image_tag == "2025-05-08"
    result = asyncio.run(grade(grader))
    assert result.reward == 0.7 and result.metadata["passed"] is True
    assert result.metadata["scores"] == {"raw": 0.7, "image_tag": "2025-05-08"}
    for bad, field in [({"sourse": "x"}, "grader.sourse"), ({"pass_threshold": "high"},
                       "grader.pass_threshold"), ({"name": None}, "grader.name")]:
        config = {"type": "python", "name": "g", "source": "def grade(s, i): return 1", **bad}
        with pytest.raises(SpecError) as info:
            from_config(config)
        assert info.value.field == field


async def test_sandbox_that_cannot_start_is_a_server_error():
    grader = make("def grade(s, i):\n    return 1\n", sandbox=BwrapSandbox("/nonexistent/bwrap"))
    result = await grade(grader)
    assert result.raised_flags == ["python_grader_server_error"] and result.should_discard
    assert "sandbox_start_failed" in result.metadata["errors"]["python_grader_server_error_type"]


async def test_ten_graders_at_once():
    grader = make("import time\ndef grade(sample, item):\n"
                  "    time.sleep(0.3)\n    return item['k'] / 10\n")
    start = time.monotonic()
    results = await asyncio.gather(*(grade(grader, item={"k": k}) for k in range(10)))
    assert [r.reward for r in results] == [k / 10 for k in range(10)]
    assert time.monotonic() - start < 10


# --- what the sandbox lets through -------------------------------------------------------

async def test_reading_world_readable_files_is_allowed(sandbox):
    # Documented: the sandbox user reads what any local user may read, e.g. /etc/passwd.
    source = "def grade(s, i):\n    return float('root:' in open('/etc/passwd').read())\n"
    assert (await grade(make(source, sandbox))).reward == 1.0


async def test_reading_root_only_files_is_refused(sandbox, tmp_path):
    secret = tmp_path / "secret.txt"  # pytest's tmp dirs are root-only (0700)
    secret.write_text("s3cret")
    source = f"def grade(s, i):\n    return float('s3cret' in open({str(secret)!r}).read())\n"
    assert_runtime_error(await grade(make(source, sandbox)), "Error")


async def test_scratch_dir_is_writable(sandbox):
    source = ("import os, tempfile\n"
              "def grade(s, i):\n"
              "    path = os.path.join(tempfile.gettempdir(), 'scratch.txt')\n"
              "    open(path, 'w').write('ok')\n"
              "    return float(open(path).read() == 'ok')\n")
    assert (await grade(make(source, sandbox))).reward == 1.0


# --- hostile code ------------------------------------------------------------------------

async def test_network_is_unreachable():
    require_system("bubblewrap", bwrap_problem(shutil.which("bwrap")))
    sandbox = default_sandbox()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0)
    port = server.getsockname()[1]
    source = ("import socket\n"
              "def grade(s, i):\n"
              f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
              "    return 1.0\n")
    try:
        assert_runtime_error(await grade(make(source, sandbox)), "Error")
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected to the host's loopback
    finally:
        server.close()


async def test_writes_outside_scratch_are_refused(sandbox, tmp_path):
    tag = uuid.uuid4().hex
    targets = [f"/root/pwned-{tag}", os.path.join(os.getcwd(), f"pwned-{tag}"),
               str(tmp_path / f"pwned-{tag}"), os.path.join(sys.prefix, f"pwned-{tag}")]
    source = ("def grade(s, i):\n"
              "    blocked = 0\n"
              f"    for path in {targets!r}:\n"
              "        try:\n"
              "            open(path, 'w').write('pwned')\n"
              "        except OSError:\n"
              "            blocked += 1\n"
              "    if blocked == len(" + repr(targets) + "):\n"
              "        raise PermissionError(f'blocked {blocked}')\n"
              "    return 1.0\n")
    result = await grade(make(source, sandbox))
    assert_runtime_error(result, f"blocked {len(targets)}")
    assert not any(os.path.exists(path) for path in targets)


async def test_endless_loop_ends_at_the_cpu_limit(sandbox):
    limits = PYTHON_GRADER_LIMITS.with_(cpu_seconds=1, wall_seconds=20)
    start = time.monotonic()
    result = await grade(make("def grade(s, i):\n    while True:\n        pass\n", sandbox, limits))
    assert_runtime_error(result, "CPU time limit")
    assert time.monotonic() - start < 5


async def test_sleeping_forever_ends_at_the_wall_clock_limit(sandbox):
    limits = PYTHON_GRADER_LIMITS.with_(wall_seconds=1)
    source = "import time\ndef grade(s, i):\n    time.sleep(3600)\n"
    start = time.monotonic()
    assert_runtime_error(await grade(make(source, sandbox, limits)), "wall-clock limit")
    assert time.monotonic() - start < 4
    assert leftover_processes() == []


@pytest.mark.parametrize("source", [
    "def grade(s, i):\n    return len(bytearray(10 * 2**30))\n",
    "def grade(s, i):\n    chunks = []\n    while True:\n        chunks.append(bytearray(2**24))\n",
])
async def test_allocating_10_gb_is_a_memory_error(sandbox, source):
    assert_runtime_error(await grade(make(source, sandbox)), "MemoryError", "memory limit")


async def test_fork_bomb_dies_at_the_process_limit(sandbox):
    source = "import os\ndef grade(s, i):\n    while True:\n        os.fork()\n"
    start = time.monotonic()
    assert_runtime_error(await grade(make(source, sandbox)), "process limit")
    assert time.monotonic() - start < LIMITS.wall_seconds
    assert leftover_processes() == []


async def test_stubborn_fork_bomb_that_escapes_its_session_is_killed(sandbox):
    source = ("import os\n"
              "def grade(s, i):\n"
              "    while True:\n"
              "        try:\n"
              "            if os.fork() == 0:\n"
              "                os.setsid()\n"
              "        except OSError:\n"
              "            pass\n")
    limits = PYTHON_GRADER_LIMITS.with_(cpu_seconds=2, max_processes=16, wall_seconds=2)
    start = time.monotonic()
    assert_runtime_error(await grade(make(source, sandbox, limits)), "limit")
    assert time.monotonic() - start < 6
    assert leftover_processes() == []


async def test_output_flood_ends_at_the_output_limit(sandbox):
    source = "def grade(s, i):\n    while True:\n        print('x' * 4096)\n"
    assert_runtime_error(await grade(make(source, sandbox)), "output limit")
