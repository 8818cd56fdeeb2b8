from typing import Annotated

from mcp_plugin import Field, Plugin

plugin = Plugin("__PLUGIN_NAME__", "0.1.0", "Greets people")


@plugin.tool(read_only=True)
def greet(name: Annotated[str, Field(max_length=100, description="Who to greet.")]) -> str:
    """Greet someone by name."""
    return f"Hello, {name}!"


Handler = plugin.handler()
