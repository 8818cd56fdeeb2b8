//! What the MCP front says on the wire, whichever the transport: the
//! JSON-RPC error codes, the session header, the methods served.

/// The body was not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// The body was JSON but not a request this endpoint takes.
pub const INVALID_REQUEST: i64 = -32600;
/// The method is one the host serves but its params do not fit it.
pub const INVALID_PARAMS: i64 = -32602;
/// The host cannot take the request now (too many sessions, rate limit).
pub const SERVER_BUSY: i64 = -32000;
/// The request's credentials were missing, invalid or insufficient.
pub const UNAUTHORIZED: i64 = -32001;

/// The largest message read: an HTTP body, a stdio line (the same bound
/// the MCP service keeps).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The header naming a request's session.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// The standard methods the host serves. rmcp hands a request whose
/// params do not deserialise to `on_custom_request`, as if
/// its method were unknown.
pub const SERVED_METHODS: [&str; 18] = [
    "initialize",
    "ping",
    "server/discover",
    "subscriptions/listen",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/cancel",
];
