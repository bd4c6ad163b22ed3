"""An outside MCP server for the tests (stdio), written with the official SDK: shoal is its client."""

import asyncio

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("echo")


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Always fails.")
def fail() -> str:
    raise ToolError("the echo server refuses")


@server.tool(description="Takes a long time.")
async def slow() -> str:
    await asyncio.sleep(30)
    return "late"


if __name__ == "__main__":
    server.run("stdio")
