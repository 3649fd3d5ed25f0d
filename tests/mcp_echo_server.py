"""An MCP server built with the `mcp` SDK's own MCPServer, for what the PyPI server in
test_mcp_tools.py cannot show: the `_meta` a call carries, headers over HTTP, a crash.

    python tests/mcp_echo_server.py               # stdio
    python tests/mcp_echo_server.py --http PORT   # streamable HTTP on 127.0.0.1:PORT/mcp
"""

import os
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("agentrft-test-echo")


@server.tool()
def echo_meta(text: str, ctx: Context) -> str:
    """Echo the text, the request's trace_id and call_id, and the server's pid."""
    meta = ctx.request_context.meta
    data = meta.model_dump() if hasattr(meta, "model_dump") else dict(meta or {})
    headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
    return (f"{text}|trace_id={data.get('trace_id')}|call_id={data.get('call_id')}"
            f"|auth={headers.get('authorization')}|pid={os.getpid()}")


@server.tool()
def crash() -> str:
    """End the server process at once."""
    os._exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
