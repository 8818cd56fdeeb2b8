"""What the host offers every plugin: logs, progress, cancellation and
granted environment variables.

Outside a component (a plugin's logic tested natively) logs go to stderr,
progress is dropped, nothing is cancelled and no variable is granted.
"""

from __future__ import annotations

import sys

try:
    from wit_world.imports import host as _host
    from wit_world.imports import mcp_host_plugin_types as _types
except ImportError:  # natively, outside a component
    _host = None
    _types = None

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def log(level: str, message: str) -> None:
    """A log line for the client (at the level it asked for) and the host's
    log. ``level`` is one of ``LEVELS``."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: use one of {', '.join(LEVELS)}")
    if _host is None:
        print(f"[{level}] {message}", file=sys.stderr)
        return
    _host.log(_types.LogLevel[level.upper()], message)


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warning(message: str) -> None:
    log("warning", message)


def error(message: str) -> None:
    log("error", message)


def progress(done: float, total: float | None = None, message: str | None = None) -> None:
    """Reports progress of the current call (forwarded when the client
    asked for it); ``done`` should grow with each report."""
    if _host is not None:
        _host.progress(float(done), None if total is None else float(total), message)


def cancelled() -> bool:
    """Whether the client cancelled the call: check it between steps of long
    work and stop early (the host stops the instance soon after anyway)."""
    return _host is not None and _host.is_cancelled()


def env(name: str) -> str | None:
    """The environment variable ``name`` if the policy grants it; asking for
    one it does not grant is refused and reported to the client."""
    if _host is None:
        return None
    return _host.env(name)
