"""Tools: typed functions with JSON schemas that bots (and clients over /v1, Ollama, MCP) may call.

``registry`` holds them and checks permissions on every call, ``builtin`` has
the tools shoal ships, ``calling`` makes a small model choose a tool through
JSON-schema-constrained output, ``mcp`` serves shoal over MCP and takes tools
from outside MCP servers. See docs/tools.md.
"""
