"""What goes wrong in a plugin, and how a failure is told: the exceptions
a plugin raises for the host to report, and the one-line description of
any other. Shared by the plugin's declarations (``plugin.py``) and the
component's entry points (``handler.py``)."""

from __future__ import annotations

import os
import typing


class ToolError(Exception):
    """A failure the model should read and act on: the call returns a tool
    error whose text is this exception's message."""


class NotFound(Exception):
    """Nothing by that URI or name (resources, prompts, completions)."""


class InvalidArguments(Exception):
    """The request's arguments are wrong; the message says how."""


class PluginDefinitionError(Exception):
    """A mistake in how the plugin declares itself, found at build time."""


def out_of_memory() -> typing.NoReturn:
    """Stops the instance at once after a ``MemoryError``: the host reports
    the memory limit that was hit, as for a plugin in any language. (Python
    itself may be short of memory now; nothing more is attempted.)"""
    os.abort()


def describe_failure(error: BaseException) -> str:
    """An exception in one line, without a traceback (formatting one would
    read source files the sandbox does not have)."""
    message = str(error)
    kind = type(error).__name__
    return f"{kind}: {message}" if message else kind
