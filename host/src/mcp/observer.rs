//! Forwarding what a plugin reports during a call to the client that made it.
#![allow(deprecated)] // MCP logging is deprecated for 2026-07-28 but still served to older clients.

use crate::runtime::{Answer, CallObserver, LogLevel, Notify, Question, Unanswered};
use rmcp::RoleServer;
use rmcp::model::{
    ClientCapabilities, CreateMessageRequest, ElicitRequest, ListRootsRequest, LoggingLevel,
    LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken, ServerRequest,
};
use rmcp::service::ServiceError;
use rmcp::service::{Peer, RequestContext};
use std::sync::{Arc, Mutex};

/// Logs go to clients with a session (2025-11-25) at this level and above
/// until they ask otherwise.
const DEFAULT_LEVEL: LoggingLevel = LoggingLevel::Info;

/// The level a connection asked for with `logging/setLevel`.
#[derive(Clone, Default)]
pub struct LogLevelSetting(Arc<Mutex<Option<LoggingLevel>>>);

impl LogLevelSetting {
    pub fn set(&self, level: LoggingLevel) {
        if let Ok(mut current) = self.0.lock() {
            *current = Some(level);
        }
    }

    /// The level for one request, `None` for no logs: its own `_meta`
    /// level; none for a 2026-07-28 request without one (that revision
    /// logs only when asked per request); else the connection's, else the
    /// default.
    pub fn effective(&self, context: &RequestContext<RoleServer>) -> Option<LoggingLevel> {
        if let Some(level) = context.meta.log_level() {
            return Some(level);
        }
        if context.meta.protocol_version().is_some() {
            return None;
        }
        let set = self.0.lock().ok().and_then(|level| *level);
        Some(set.unwrap_or(DEFAULT_LEVEL))
    }
}

/// Sends a plugin's log lines and progress to one client, and its
/// questions, awaiting the answers.
pub struct ClientObserver {
    peer: Peer<RoleServer>,
    logger: String,
    /// The lowest level sent; `None` sends nothing.
    level: Option<LoggingLevel>,
    progress_token: Option<ProgressToken>,
    /// Whether the request's revision carries server-to-client requests
    /// (2025-11-25 and older; 2026-07-28 asks through the result).
    may_ask: bool,
}

impl ClientObserver {
    pub fn new(
        peer: Peer<RoleServer>,
        plugin: &str,
        level: Option<LoggingLevel>,
        progress_token: Option<ProgressToken>,
        may_ask: bool,
    ) -> Self {
        ClientObserver {
            peer,
            logger: plugin.to_owned(),
            level,
            progress_token,
            may_ask,
        }
    }

    /// The request `question` makes, if this client may be sent it.
    fn request_for(&self, question: Question) -> Result<ServerRequest, Unanswered> {
        if !self.may_ask {
            return Err(Unanswered::NotOnThisRevision);
        }
        let Question { method, params } = question;
        let (needs, declared): (_, fn(&ClientCapabilities) -> bool) = match method.as_str() {
            "elicitation/create" => ("elicitation", |c| c.elicitation.is_some()),
            "sampling/createMessage" => ("sampling", |c| c.sampling.is_some()),
            "roots/list" => ("roots", |c| c.roots.is_some()),
            _ => return Err(Unanswered::UnknownMethod(method)),
        };
        let declared = self
            .peer
            .peer_info()
            .is_some_and(|info| declared(&info.capabilities));
        if !declared {
            return Err(Unanswered::NotDeclared(needs));
        }
        // Params are read as the method's own type, so a malformed question
        // fails here rather than going out as some other request.
        let malformed = |error: serde_json::Error| {
            Unanswered::Failed(format!("malformed `{method}` request: {error}"))
        };
        let params = serde_json::Value::Object(params);
        Ok(match needs {
            "elicitation" => ServerRequest::ElicitRequest(ElicitRequest::new(
                serde_json::from_value(params).map_err(malformed)?,
            )),
            "sampling" => ServerRequest::CreateMessageRequest(CreateMessageRequest::new(
                serde_json::from_value(params).map_err(malformed)?,
            )),
            _ => ServerRequest::ListRootsRequest(ListRootsRequest::default()),
        })
    }
}

impl CallObserver for ClientObserver {
    fn log(&self, level: LogLevel, message: String) -> Notify<'_> {
        Box::pin(async move {
            tracing::debug!(plugin = %self.logger, ?level, text = ?message, "plugin log");
            let level = logging_level(level);
            // Levels rank in declaration order, debug lowest.
            match self.level {
                Some(lowest) if level as u8 >= lowest as u8 => {}
                _ => return,
            }
            let param = LoggingMessageNotificationParam::new(level, message.into())
                .with_logger(self.logger.clone());
            // A client that went away misses the line; the call goes on.
            let _ = self.peer.notify_logging_message(param).await;
        })
    }

    fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) -> Notify<'_> {
        Box::pin(async move {
            let Some(token) = &self.progress_token else {
                return;
            };
            let mut param = ProgressNotificationParam::new(token.clone(), progress);
            if let Some(total) = total {
                param = param.with_total(total);
            }
            if let Some(message) = message {
                param = param.with_message(message);
            }
            let _ = self.peer.notify_progress(param).await;
        })
    }

    fn ask(&self, question: Question) -> Answer<'_> {
        Box::pin(async move {
            let request = self.request_for(question)?;
            let answer = self
                .peer
                .send_request(request)
                .await
                .map_err(|error| match error {
                    ServiceError::McpError(error) => {
                        Unanswered::Refused(error.message.into_owned())
                    }
                    ServiceError::TransportClosed => {
                        Unanswered::Failed("the client's connection closed".to_owned())
                    }
                    other => Unanswered::Failed(other.to_string()),
                })?;
            serde_json::to_value(answer).map_err(|error| Unanswered::Failed(error.to_string()))
        })
    }
}

/// The MCP logging level of a plugin log level.
fn logging_level(level: LogLevel) -> LoggingLevel {
    match level {
        LogLevel::Debug => LoggingLevel::Debug,
        LogLevel::Info => LoggingLevel::Info,
        LogLevel::Notice => LoggingLevel::Notice,
        LogLevel::Warning => LoggingLevel::Warning,
        LogLevel::Error => LoggingLevel::Error,
        LogLevel::Critical => LoggingLevel::Critical,
        LogLevel::Alert => LoggingLevel::Alert,
        LogLevel::Emergency => LoggingLevel::Emergency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ContentBlock,
        ElicitRequestParams, ElicitResult, ElicitationAction, ServerCapabilities, ServerConfig,
    };
    use rmcp::{ClientHandler, ErrorData, RoleClient, ServerHandler, ServiceExt};
    use serde_json::{Value, json};

    /// A server whose one tool asks the client what its arguments say.
    struct Asker;

    impl ServerHandler for Asker {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }

        async fn call_tool(
            &self,
            request: CallToolRequestParams,
            context: RequestContext<RoleServer>,
        ) -> Result<CallToolResponse, ErrorData> {
            let arguments = request.arguments.unwrap_or_default();
            let may_ask = arguments.get("may_ask") != Some(&Value::Bool(false));
            let observer = ClientObserver::new(context.peer.clone(), "p", None, None, may_ask);
            let question = Question {
                method: arguments["method"].as_str().unwrap_or_default().to_owned(),
                params: arguments["params"].as_object().cloned().unwrap_or_default(),
            };
            let answer = match observer.ask(question).await {
                Ok(answer) => json!({ "answer": answer }),
                Err(unanswered) => json!({ "unanswered": format!("{unanswered:?}") }),
            };
            Ok(CallToolResult::success(vec![ContentBlock::text(answer.to_string())]).into())
        }
    }

    /// A client that answers elicitations (and refuses one asking it to).
    struct Answers {
        capabilities: Value,
    }

    impl ClientHandler for Answers {
        fn get_info(&self) -> ClientConfig {
            let mut config = ClientConfig::default();
            config.capabilities = serde_json::from_value(self.capabilities.clone()).expect("caps");
            config
        }

        async fn create_elicitation(
            &self,
            request: ElicitRequestParams,
            _: RequestContext<RoleClient>,
        ) -> Result<ElicitResult, ErrorData> {
            let ElicitRequestParams::FormElicitationParams { message, .. } = request else {
                return Err(ErrorData::invalid_params("form only", None));
            };
            if message == "refuse" {
                return Err(ErrorData::invalid_request(
                    "the user closed the dialog",
                    None,
                ));
            }
            let mut result = ElicitResult::new(ElicitationAction::Accept);
            result.content = Some(json!({ "symbol": "AAPL", "asked": message }));
            Ok(result)
        }
    }

    /// What the tool reports for `arguments`, asked of a client declaring
    /// `capabilities`.
    async fn ask(capabilities: Value, arguments: Value) -> Value {
        let (server_end, client_end) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let running = Asker.serve(server_end).await.expect("server starts");
            let _ = running.waiting().await;
        });
        let client = Answers { capabilities }
            .serve(client_end)
            .await
            .expect("client connects");
        let call = CallToolRequestParams::new("ask")
            .with_arguments(arguments.as_object().expect("object").clone());
        let result = client.call_tool(call).await.expect("the call answers");
        let _ = client.cancel().await;
        server.abort();
        let text = result.content[0].as_text().expect("text").text.clone();
        serde_json::from_str(&text).expect("json")
    }

    fn elicit(message: &str) -> Value {
        json!({
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": message,
                "requestedSchema": { "type": "object", "properties": { "symbol": { "type": "string" } } }
            }
        })
    }

    #[tokio::test]
    async fn a_question_reaches_the_client_and_its_answer_comes_back() {
        let reply = ask(json!({ "elicitation": {} }), elicit("Which symbol?")).await;
        assert_eq!(reply["answer"]["action"], "accept", "{reply}");
        assert_eq!(reply["answer"]["content"]["symbol"], "AAPL", "{reply}");
        assert_eq!(
            reply["answer"]["content"]["asked"], "Which symbol?",
            "{reply}"
        );
    }

    #[tokio::test]
    async fn a_client_that_refuses_is_reported_with_its_reason() {
        let reply = ask(json!({ "elicitation": {} }), elicit("refuse")).await;
        let unanswered = reply["unanswered"].as_str().expect("refused");
        assert!(unanswered.starts_with("Refused("), "{reply}");
        assert!(unanswered.contains("closed the dialog"), "{reply}");
    }

    #[tokio::test]
    async fn nothing_is_sent_that_the_client_did_not_declare_or_may_not_get() {
        let undeclared = ask(json!({}), elicit("Which symbol?")).await;
        assert_eq!(undeclared["unanswered"], "NotDeclared(\"elicitation\")");

        let sampling = json!({ "method": "sampling/createMessage", "params": {} });
        let reply = ask(json!({ "elicitation": {} }), sampling).await;
        assert_eq!(reply["unanswered"], "NotDeclared(\"sampling\")");

        let not_a_server_request = json!({ "method": "tools/call", "params": {} });
        let reply = ask(json!({ "elicitation": {} }), not_a_server_request).await;
        assert_eq!(reply["unanswered"], "UnknownMethod(\"tools/call\")");

        let mut modern = elicit("Which symbol?");
        modern["may_ask"] = json!(false);
        let reply = ask(json!({ "elicitation": {} }), modern).await;
        assert_eq!(reply["unanswered"], "NotOnThisRevision");

        let malformed = json!({ "method": "elicitation/create", "params": { "mode": 7 } });
        let reply = ask(json!({ "elicitation": {} }), malformed).await;
        let unanswered = reply["unanswered"].as_str().expect("failed");
        assert!(
            unanswered.starts_with("Failed(\"malformed `elicitation/create` request"),
            "{reply}"
        );
    }

    #[tokio::test]
    async fn calls_nobody_waits_on_have_nobody_to_ask() {
        let question = Question {
            method: "elicitation/create".to_owned(),
            params: Default::default(),
        };
        let unanswered = crate::runtime::Unobserved.ask(question).await;
        assert_eq!(unanswered, Err(Unanswered::NoClient));
    }
}
