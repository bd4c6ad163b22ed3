"""``[tools]`` in shoal.toml: what the tool registry offers and to whom (docs/tools.md).

Which tools a bot may call is the bot's own ``tools = [...]`` list (empty: none;
``"*"``: every tool); this section says what exists at all. Only pydantic is
imported here: shoal.config imports this module, and ``import shoal`` must stay light.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class McpServerConfig(_Strict):
    """An outside MCP server whose tools join the registry as ``<name>.<tool>``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    transport: Literal["stdio", "http"] = "stdio"
    command: list[str] = Field(default_factory=list, description="stdio: the program and its arguments")
    url: str = Field(default="", description="http: the streamable-HTTP endpoint, e.g. http://127.0.0.1:9000/mcp")
    env: dict[str, str] = Field(default_factory=dict, description="stdio: extra environment variables")
    timeout: float = Field(default=20.0, gt=0, le=600, description="seconds to start and list the tools")

    @model_validator(mode="after")
    def _check(self) -> "McpServerConfig":
        if self.transport == "stdio" and not self.command:
            raise ValueError("an stdio MCP server needs a command, e.g. command = [\"python\", \"server.py\"]")
        if self.transport == "http" and not self.url.startswith(("http://", "https://")):
            raise ValueError("an http MCP server needs url = \"http://host:port/mcp\"")
        return self


class ToolsConfig(_Strict):
    """The tool registry: built-ins, plugins (entry points ``shoal.tools``), outside MCP servers."""

    enabled: list[str] = Field(
        default_factory=lambda: ["*"], description="tools that exist at all (\"*\": every registered tool)"
    )
    plugins: bool = Field(default=True, description="load plugins from the entry-point group shoal.tools")
    timeout: float = Field(default=10.0, gt=0, le=600, description="seconds one tool call may take")
    max_result_chars: int = Field(default=2000, ge=64, le=100_000, description="a longer result is cut")
    webhook_urls: list[str] = Field(
        default_factory=list, description="the webhook tool may call only URLs starting with one of these"
    )
    mcp: list[McpServerConfig] = Field(default_factory=list, description="outside MCP servers to take tools from")
