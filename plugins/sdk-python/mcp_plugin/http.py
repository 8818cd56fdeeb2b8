"""A small blocking HTTP client over ``wasi:http/outgoing-handler``.

Every request passes the host's policy before any byte leaves: a request the
plugin was not granted raises ``HttpError`` with ``denied`` set, and the
client is told which rule refused it.
"""

from __future__ import annotations

import dataclasses
import json as _json
import urllib.parse

from componentize_py_types import Err
from wit_world.imports import outgoing_handler
from wit_world.imports import streams
from wit_world.imports import wasi_http_types as w

#: The most of a response body read unless asked otherwise.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024

_METHODS = {
    "GET": w.Method_Get,
    "HEAD": w.Method_Head,
    "POST": w.Method_Post,
    "PUT": w.Method_Put,
    "DELETE": w.Method_Delete,
    "PATCH": w.Method_Patch,
    "OPTIONS": w.Method_Options,
}

_WHY = {
    "ErrorCode_DnsError": "cannot resolve the host name (is it spelled right?)",
    "ErrorCode_DnsTimeout": "looking up the host name timed out",
    "ErrorCode_DestinationNotFound": "the host was not found (is it spelled right?)",
    "ErrorCode_DestinationUnavailable": "the host cannot be reached (is the network up?)",
    "ErrorCode_ConnectionRefused": "cannot connect: connection refused (is the service running, on that port?)",
    "ErrorCode_ConnectionTimeout": "cannot connect: timed out (is the host reachable?)",
    "ErrorCode_ConnectionTerminated": "the connection closed before the response was complete",
    "ErrorCode_TlsProtocolError": "the TLS handshake failed (is the port one that speaks TLS?)",
    "ErrorCode_TlsCertificateError": "the server's TLS certificate is not valid for this host",
    "ErrorCode_HttpResponseTimeout": "no response arrived in time",
    "ErrorCode_HttpResponseBodySize": "the response is larger than the policy allows",
}


class HttpError(Exception):
    """A request that failed: refused by the host's policy (``denied``), or
    on the way."""

    def __init__(self, message: str, denied: bool = False):
        super().__init__(message)
        self.denied = denied


@dataclasses.dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return _json.loads(self.body)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def _failure(code, url: str) -> HttpError:
    kind = type(code).__name__
    if kind == "ErrorCode_HttpRequestDenied":
        return HttpError(f"{url}: the request was denied by the host's policy", denied=True)
    return HttpError(f"{url}: {_WHY.get(kind, kind.removeprefix('ErrorCode_'))}")


def request(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes | str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Response:
    """Sends one request and reads the whole response (at most
    ``max_bytes`` of body)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(f"{url}: not an http:// or https:// URL")
    method_type = _METHODS.get(method.upper())
    if method_type is None:
        raise HttpError(f"{url}: method {method!r} is not one of {', '.join(_METHODS)}")
    fields = w.Fields.from_list([(k, v.encode()) for k, v in (headers or {}).items()])
    outgoing = w.OutgoingRequest(fields)
    outgoing.set_method(method_type())
    outgoing.set_scheme(w.Scheme_Https() if parts.scheme == "https" else w.Scheme_Http())
    outgoing.set_authority(parts.netloc)
    path = parts.path or "/"
    outgoing.set_path_with_query(f"{path}?{parts.query}" if parts.query else path)
    payload = body.encode() if isinstance(body, str) else body
    outgoing_body = outgoing.body()
    try:
        future = outgoing_handler.handle(outgoing, None)
    except Err as error:
        raise _failure(error.value, url) from None
    # A request the host refuses has its body closed: the refusal is read
    # from the response, so a failed write waits for it.
    body_failed = False
    try:
        if payload:
            with outgoing_body.write() as stream:
                for start in range(0, len(payload), 4096):
                    stream.blocking_write_and_flush(payload[start : start + 4096])
        w.OutgoingBody.finish(outgoing_body, None)
    except Err:
        body_failed = True
    with future:
        with future.subscribe() as ready:
            ready.block()
        answer = future.get()
    if answer is None or isinstance(answer, Err):
        raise HttpError(f"{url}: no response")
    inner = answer.value
    if isinstance(inner, Err):
        raise _failure(inner.value, url)
    if body_failed:
        raise HttpError(f"{url}: sending the request body failed")
    response = inner.value
    with response:
        status = response.status()
        with response.headers() as fields:
            header_list = [(k, v.decode("latin-1")) for k, v in fields.entries()]
        incoming = response.consume()
        chunks: list[bytes] = []
        size = 0
        with incoming.stream() as stream:
            while True:
                try:
                    chunk = stream.blocking_read(65536)
                except Err as error:
                    if isinstance(error.value, streams.StreamError_Closed):
                        break
                    raise HttpError(f"{url}: the response was cut short") from None
                size += len(chunk)
                if size > max_bytes:
                    raise HttpError(f"{url}: the response is larger than {max_bytes} bytes")
                chunks.append(chunk)
        incoming.__exit__(None, None, None)
    return Response(status, header_list, b"".join(chunks))


def get(url: str, headers: dict[str, str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Response:
    return request("GET", url, headers=headers, max_bytes=max_bytes)
