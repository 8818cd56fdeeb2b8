"""Write MCP plugins for ``host`` in Python.

A plugin is one module: declare its tools, resources and prompts on a
``Plugin`` with decorators, and end it with ``Handler = plugin.handler()``::

    from typing import Annotated
    from mcp_plugin import Field, Plugin

    plugin = Plugin("hello", "0.1.0", "Greets people")

    @plugin.tool(read_only=True)
    def greet(name: Annotated[str, Field(max_length=100)]) -> str:
        \"\"\"Greets someone by name.\"\"\"
        return f"Hello, {name}!"

    Handler = plugin.handler()

``plugins/build`` turns it into a component with componentize-py. Files
under the policy's mounts are read with ``open``; HTTP goes through
``mcp_plugin.http``; state kept between calls in granted buckets through
``mcp_plugin.Bucket``; logs, progress and cancellation through
``mcp_plugin.host``.
"""

from typing import Annotated, Literal, Optional, TypedDict

from .errors import InvalidArguments, NotFound, PluginDefinitionError, ToolError
from .plugin import Plugin
from .schema import Field
from .state import Bucket, StateError

__all__ = [
    "Annotated",
    "Bucket",
    "Field",
    "InvalidArguments",
    "Literal",
    "NotFound",
    "Optional",
    "Plugin",
    "PluginDefinitionError",
    "StateError",
    "ToolError",
    "TypedDict",
]
