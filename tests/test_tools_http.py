"""`HttpTool` against a real server on loopback: every wire-format rule in DESIGN.md."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from agentrft.errors import SpecError, ToolInfraFailure, ToolUnreachable
from agentrft.tools.base import ToolCallRequest
from agentrft.tools.http import MAX_BODY_BYTES, HttpTool
from tests.tool_server import LoopbackToolServer

SECRET = "Bearer sk-very-secret-123"


@pytest.fixture(scope="module")
def server():
    with LoopbackToolServer(lookup={"revenue": "42", "ceo": "Ada"}) as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh_records(server):
    server.clear()


@pytest.fixture
async def make_tool(server):
    """make_tool("/path", **HttpTool kwargs); every tool made is closed after the test."""
    made: list[HttpTool] = []

    def make(path: str, name: str = "lookup", **kwargs) -> HttpTool:
        url = path if path.startswith("http") else server.url(path)
        made.append(HttpTool(name, url, **kwargs))
        return made[-1]

    yield make
    for tool in made:
        await tool.aclose()


def req(arguments: dict | str = "{}", **item) -> ToolCallRequest:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCallRequest(id="fc_1", call_id="call_1", name="lookup", arguments=args,
                           trace_id="trace_abc", item=item)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


# -- request format ------------------------------------------------------------------

async def test_request_body_and_headers_follow_the_wire_format(server, make_tool):
    tool = make_tool("/echo", headers={"Authorization": SECRET, "X-Team": "finance"})
    out = await tool.call(req({"key": "revenue"}, reference_answer="42", year=2024))

    assert out.output == '{"key": "revenue"}' and not out.is_error and out.status_code == 200
    (seen,) = server.requests_for("/echo")
    assert seen.method == "POST"
    assert seen.json == {
        "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup",
        "arguments": '{"key": "revenue"}', "trace_id": "trace_abc",
        "item": {"reference_answer": "42", "year": 2024},
    }
    assert seen.headers["authorization"] == SECRET
    assert seen.headers["x-team"] == "finance"
    assert seen.headers["content-type"] == "application/json"


async def test_configured_content_type_cannot_override_json(server, make_tool):
    await make_tool("/echo", headers={"content-type": "text/plain"}).call(req())
    assert server.requests_for("/echo")[0].headers["content-type"] == "application/json"


# -- 2xx -----------------------------------------------------------------------------

async def test_2xx_output_is_returned_with_status_and_latency(make_tool):
    out = await make_tool("/lookup").call(req({"key": "ceo"}))
    assert (out.output, out.is_error, out.status_code) == ("Ada", False, 200)
    assert out.latency_s > 0


async def test_non_string_output_is_json_encoded(server, make_tool):
    server.add_handler("/structured", lambda body, r: {"output": {"rows": [1, 2]}, "id": "x"})
    out = await make_tool("/structured").call(req())
    assert not out.is_error and json.loads(out.output) == {"rows": [1, 2]}


async def test_non_json_2xx_is_a_model_visible_error(make_tool):
    out = await make_tool("/notjson").call(req())
    assert out.is_error and out.status_code == 200
    assert out.output.startswith("Error: tool 'lookup' returned a non-JSON body")
    assert "plain text, not JSON" in out.output


@pytest.mark.parametrize("reply", [{"result": "no output key"}, ["a", "list"]])
async def test_json_without_output_is_a_model_visible_error(server, make_tool, reply):
    server.add_handler("/nooutput", lambda body, r: Response(json.dumps(reply),
                                                             media_type="application/json"))
    out = await make_tool("/nooutput").call(req())
    assert out.is_error and out.output.startswith("Error: tool 'lookup' returned JSON without")


async def test_unreadable_body_preview_is_capped_at_200_chars(server, make_tool):
    server.add_handler("/verbose", lambda body, r: PlainTextResponse("y" * 5000))
    out = await make_tool("/verbose").call(req())
    assert out.is_error and out.output.endswith("body: " + "y" * 200)


# -- 4xx -----------------------------------------------------------------------------

async def test_4xx_shows_status_and_body_to_the_model_without_retry(server, make_tool):
    out = await make_tool("/lookup").call(req({"key": "nope"}))
    assert out.is_error and out.status_code == 400
    assert out.output.startswith("Error 400: unknown key 'nope'")
    assert server.count("/lookup") == 1


async def test_4xx_body_is_capped(server, make_tool):
    server.add_handler("/chatty422", lambda body, r: PlainTextResponse("z" * 50_000, 422))
    out = await make_tool("/chatty422").call(req())
    assert out.is_error and out.output.startswith("Error 422: zzz")
    assert len(out.output) < 2100


async def test_header_values_are_redacted_from_error_output(server, make_tool):
    echo_auth = lambda body, r: PlainTextResponse(f"bad token {r.headers['authorization']}", 401)
    server.add_handler("/echoauth401", echo_auth)
    out = await make_tool("/echoauth401", headers={"Authorization": SECRET}).call(req())
    assert out.is_error and SECRET not in out.output and "[redacted]" in out.output


# -- retries and infra failures ------------------------------------------------------

@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_5xx_is_retried_max_retries_times_then_infra_failure(server, make_tool,
                                                                  max_retries):
    tool = make_tool("/flaky503", headers={"Authorization": SECRET},
                     max_retries=max_retries, backoff_s=0.01)
    with pytest.raises(ToolInfraFailure) as err:
        await tool.call(req())
    assert server.count("/flaky503") == 1 + max_retries
    msg = str(err.value)
    assert "'lookup'" in msg and server.url("/flaky503") in msg and "503" in msg
    assert SECRET not in msg and "sk-very" not in msg


async def test_backoff_is_exponential(server, make_tool):
    with pytest.raises(ToolInfraFailure):
        await make_tool("/flaky503", max_retries=3, backoff_s=0.05).call(req())
    times = [r.received_at for r in server.requests_for("/flaky503")]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert [g >= 0.05 * 2 ** i for i, g in enumerate(gaps)] == [True, True, True]


async def test_retry_recovers_and_latency_covers_every_attempt(server, make_tool):
    def twice_then_ok(body, r):
        if server.count("/recovers") <= 2:
            return Response("busy", status_code=503)
        return {"output": "finally"}

    server.add_handler("/recovers", twice_then_ok)
    out = await make_tool("/recovers", backoff_s=0.05).call(req())
    assert out.output == "finally" and server.count("/recovers") == 3
    assert out.latency_s >= 0.05 + 0.1


async def test_timeout_is_retried_then_infra_failure(server, make_tool):
    tool = make_tool("/slow", headers={"Authorization": SECRET}, timeout_s=0.1,
                     max_retries=2, backoff_s=0.01)
    start = time.monotonic()
    with pytest.raises(ToolInfraFailure) as err:
        await tool.call(req({"sleep_s": 0.5}))
    assert time.monotonic() - start < 0.45  # gave up on each attempt at its timeout
    assert server.count("/slow") == 3
    assert "timeout" in str(err.value) and SECRET not in str(err.value)


async def test_connection_error_is_retried_then_infra_failure(make_tool):
    url = f"http://127.0.0.1:{closed_port()}/tool"
    tool = make_tool(url, headers={"Authorization": SECRET}, max_retries=2, backoff_s=0.01)
    with pytest.raises(ToolInfraFailure) as err:
        await tool.call(req())
    msg = str(err.value)
    assert url in msg and "ConnectError" in msg and "3 attempts" in msg and SECRET not in msg


async def test_url_password_is_not_in_messages(server, make_tool):
    url = f"http://bob:pw-secret-xyz@127.0.0.1:{server.port}/flaky503"
    with pytest.raises(ToolInfraFailure) as err:
        await make_tool(url, max_retries=0).call(req())
    assert "pw-secret-xyz" not in str(err.value) and "/flaky503" in str(err.value)


async def test_redirect_is_an_infra_failure_without_retries(server, make_tool):
    server.add_handler("/moved", lambda body, r: Response(status_code=307,
                                                          headers={"location": "/echo"}))
    with pytest.raises(ToolInfraFailure, match="HTTP 307"):
        await make_tool("/moved", backoff_s=0.01).call(req())
    assert server.count("/moved") == 1


# -- 1 MB caps -----------------------------------------------------------------------

def padded_request(size: int) -> ToolCallRequest:
    """A request whose JSON-encoded body is exactly `size` bytes."""
    base = len(json.dumps(_wire(req(pad=""))).encode())
    return req(pad="p" * (size - base))


def _wire(r: ToolCallRequest) -> dict:
    return {"type": "function_call", "id": r.id, "call_id": r.call_id, "name": r.name,
            "arguments": r.arguments, "trace_id": r.trace_id, "item": r.item}


async def test_request_body_at_the_cap_is_sent(server, make_tool):
    out = await make_tool("/echo").call(padded_request(MAX_BODY_BYTES))
    assert not out.is_error and len(server.requests_for("/echo")[0].body) == MAX_BODY_BYTES


async def test_request_body_over_the_cap_is_not_sent(server, make_tool):
    out = await make_tool("/echo").call(padded_request(MAX_BODY_BYTES + 1))
    assert out.is_error and out.status_code == 413
    assert out.output == "Error 413: request body too large (1000001 bytes > 1000000)"
    assert server.count("/echo") == 0


async def test_response_over_the_cap_is_a_413_error(make_tool):
    out = await make_tool("/big").call(req())  # declares its Content-Length
    assert out.is_error and out.status_code == 200
    assert out.output.startswith("Error 413: response body too large")


async def test_streamed_response_is_read_only_up_to_the_cap(server, make_tool):
    async def two_mb_then_stall():
        for _ in range(32):
            yield b"x" * 65536
        await asyncio.sleep(2)  # a client that read to the end would time out here

    server.add_handler("/endless", lambda body, r: StreamingResponse(two_mb_then_stall()))
    start = time.monotonic()
    out = await make_tool("/endless", timeout_s=1.5, max_retries=0).call(req())
    assert out.is_error and out.output.startswith("Error 413: response body too large")
    assert time.monotonic() - start < 1


# -- concurrency ---------------------------------------------------------------------

async def test_two_calls_overlap_in_time(server, make_tool):
    tool = make_tool("/slow")
    start = time.monotonic()
    outs = await asyncio.gather(tool.call(req({"sleep_s": 0.3})), tool.call(req({"sleep_s": 0.3})))
    assert all(not o.is_error for o in outs)
    assert time.monotonic() - start < 0.55
    a, b = server.requests_for("/slow")
    assert a.received_at < b.finished_at and b.received_at < a.finished_at


# -- preflight, construction, closing ------------------------------------------------

@pytest.mark.parametrize("path", ["/lookup", "/no-such-path"])  # 405 and 404 both count
async def test_check_passes_on_any_http_answer(server, make_tool, path):
    await make_tool(path).check()
    assert server.requests_for(path)[0].method == "GET"


async def test_check_raises_unreachable_on_a_closed_port(make_tool):
    url = f"http://127.0.0.1:{closed_port()}/search"
    with pytest.raises(ToolUnreachable) as err:
        await make_tool(url, name="search", headers={"Authorization": SECRET}).check()
    assert str(err.value).startswith(f"tool 'search': server at {url} is unreachable: ")
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("url", ["ftp://example.com/tool", "/relative/only", "http://"])
def test_bad_server_url_is_a_spec_error(url):
    with pytest.raises(SpecError) as err:
        HttpTool("search", url)
    assert err.value.field == "tools.search.server_url"


async def test_aclose_closes_only_its_own_client(server):
    own = HttpTool("lookup", server.url("/echo"))
    await own.aclose()
    assert own._client.is_closed

    async with httpx.AsyncClient() as shared:
        tool = HttpTool("lookup", server.url("/echo"), client=shared)
        await tool.aclose()
        assert not shared.is_closed
        assert (await tool.call(req())).output == "{}"
