//! Telling clients what a reload changed: list-changed notifications, and
//! updates to the resources they watch (after a reload, or a call that
//! changed a plugin's state), to peers with a session and to
//! `subscriptions/listen` streams alike.

use super::Shared;
use super::subscriptions::Watched;
use crate::plugin::Change;
use rmcp::RoleServer;
use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::{Peer, SubscriptionContext};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Every list, when a client fell behind and cannot know what changed.
const EVERYTHING: Change = Change {
    tools: true,
    resources: true,
    prompts: true,
};

/// The next change, or `None` once no more can come.
async fn next_change(changes: &mut broadcast::Receiver<Change>) -> Option<Change> {
    match changes.recv().await {
        Ok(change) => Some(change),
        Err(broadcast::error::RecvError::Lagged(_)) => Some(EVERYTHING),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

/// What to tell watchers next: a reload's change, or (as no list
/// changed) that some plugin's state did; `None` once no more can come.
async fn next_event(
    changes: &mut broadcast::Receiver<Change>,
    state: &mut broadcast::Receiver<()>,
) -> Option<Change> {
    tokio::select! {
        change = next_change(changes) => change,
        changed = state.recv() => match changed {
            // Missed state changes only mean looking at every resource:
            // which is what each one does anyway.
            Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::default()),
            Err(broadcast::error::RecvError::Closed) => None,
        },
    }
}

/// Tells a client with a session (stdio, or 2025-11-25 HTTP) which lists
/// changed, and which of the resources it watches were updated.
async fn notify_peer(
    peer: &Peer<RoleServer>,
    change: Change,
    updated: Vec<String>,
) -> Result<(), rmcp::service::ServiceError> {
    for uri in updated {
        peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
            .await?;
    }
    if change.tools {
        peer.notify_tool_list_changed().await?;
    }
    if change.resources {
        peer.notify_resource_list_changed().await?;
    }
    if change.prompts {
        peer.notify_prompt_list_changed().await?;
    }
    Ok(())
}

/// The resources in `watched` that `shared` now serves differently.
fn updated_resources(shared: &Shared, watched: &Mutex<Watched>) -> Vec<String> {
    let registry = shared.registry.load();
    watched
        .lock()
        .map(|mut watched| watched.updated(&registry, &shared.state))
        .unwrap_or_default()
}

/// Tells `peer` of every change until `ended`, the host shuts down or
/// the peer goes away: a client with a session (stdio, 2025-11-25 HTTP).
pub(super) fn watch_changes(
    shared: &Arc<Shared>,
    peer: Peer<RoleServer>,
    watched: Arc<Mutex<Watched>>,
    ended: WaitForCancellationFutureOwned,
) {
    let mut changes = shared.changes.subscribe();
    let mut state = shared.state_changed.subscribe();
    // Weak: the task must not keep the host's state (and so the change
    // channel it waits on) alive once the host is shutting down.
    let shared_weakly = Arc::downgrade(shared);
    let watching = shared.metrics.session_watcher();
    tokio::spawn(async move {
        let _watching = watching;
        tokio::pin!(ended);
        loop {
            let change = tokio::select! {
                () = &mut ended => break,
                change = next_event(&mut changes, &mut state) => change,
            };
            let Some(change) = change else { break };
            let Some(shared) = shared_weakly.upgrade() else {
                break;
            };
            let updated = updated_resources(&shared, &watched);
            if change == Change::default() && updated.is_empty() {
                continue;
            }
            if peer.is_transport_closed() || notify_peer(&peer, change, updated).await.is_err() {
                break;
            }
        }
    });
}

/// Serves one `subscriptions/listen` stream (2026-07-28) until it is
/// cancelled or no more changes can come.
pub(super) async fn listen(shared: &Shared, context: SubscriptionContext) {
    let mut changes = shared.changes.subscribe();
    let mut state = shared.state_changed.subscribe();
    let user = super::request::principal_of(context.request_context()).id;
    let watched = Mutex::new(Watched::for_user(user));
    if let (Ok(mut watched), Some(uris)) =
        (watched.lock(), &context.accepted().resource_subscriptions)
    {
        let registry = shared.registry.load();
        for uri in uris {
            // Past the host's bound the rest go unwatched; the stream
            // still reports list changes.
            if watched.add(uri.clone(), &registry, &shared.state).is_err() {
                break;
            }
        }
    }
    loop {
        let change = tokio::select! {
            () = context.cancelled() => return,
            change = next_event(&mut changes, &mut state) => match change {
                Some(change) => change,
                None => return,
            },
        };
        let sink = context.sink();
        // A listener that went away is the SDK's to clean up; keep going
        // until the subscription is cancelled.
        for uri in updated_resources(shared, &watched) {
            let _ = sink.notify_resource_updated(uri).await;
        }
        if change.tools {
            let _ = sink.notify_tool_list_changed().await;
        }
        if change.resources {
            let _ = sink.notify_resource_list_changed().await;
        }
        if change.prompts {
            let _ = sink.notify_prompt_list_changed().await;
        }
    }
}
