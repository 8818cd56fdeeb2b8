//! `host state`: what operators do with plugins' key-value data — see it,
//! move it, and delete one user's.

use crate::capability::keyvalue::store::{KeyValueStore, Namespace, Quota};
use crate::cli::{StateArgs, StateCommand, StateExportArgs, StateForgetArgs, StateImportArgs};
use crate::config::Settings;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// One key of one bucket, as `export` writes it and `import` reads it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Line {
    plugin: String,
    bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    key: String,
    /// The value, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// The value, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

/// What an import may write: the data was within its quota when exported,
/// and the operator decides what goes back.
const UNLIMITED: Quota = Quota {
    max_keys: u64::MAX,
    max_bytes: u64::MAX,
};

/// Runs a `host state` command.
pub async fn run(command: StateCommand) -> anyhow::Result<bool> {
    match command {
        StateCommand::List(args) => list(&args).await,
        StateCommand::Export(args) => export(&args).await,
        StateCommand::Import(args) => import(&args).await,
        StateCommand::Forget(args) => forget(&args).await,
    }
}

fn store(locations: &crate::cli::Locations) -> anyhow::Result<std::sync::Arc<dyn KeyValueStore>> {
    Ok(Settings::resolve(locations)?.policies.services.keyvalue)
}

async fn list(args: &StateArgs) -> anyhow::Result<bool> {
    let store = store(&args.locations)?;
    let mut spaces = store.namespaces().await?;
    spaces.sort_by(|a, b| a.0.cmp(&b.0));
    println!("store: {}", store.describe());
    if spaces.is_empty() {
        println!("no bucket holds data");
    }
    for (ns, usage) in spaces {
        println!(
            "{}  {} keys, {} bytes",
            crate::printable::escape(&ns.to_string()),
            usage.keys,
            usage.bytes
        );
    }
    Ok(true)
}

async fn export(args: &StateExportArgs) -> anyhow::Result<bool> {
    let store = store(&args.locations)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut spaces = store.namespaces().await?;
    spaces.sort_by(|a, b| a.0.cmp(&b.0));
    let mut keys = 0;
    for (ns, _) in spaces {
        if args.plugin.as_ref().is_some_and(|p| *p != ns.plugin)
            || args
                .user
                .as_ref()
                .is_some_and(|u| Some(u) != ns.user.as_ref())
        {
            continue;
        }
        for (key, value) in store.entries(&ns).await? {
            let (value, value_base64) = match String::from_utf8(value) {
                Ok(text) => (Some(text), None),
                Err(bytes) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes.into_bytes())),
                ),
            };
            let line = Line {
                plugin: ns.plugin.clone(),
                bucket: ns.bucket.clone(),
                user: ns.user.clone(),
                key,
                value,
                value_base64,
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
            keys += 1;
        }
    }
    out.flush()?;
    eprintln!("exported {keys} keys");
    Ok(true)
}

async fn import(args: &StateImportArgs) -> anyhow::Result<bool> {
    let store = store(&args.locations)?;
    let file = std::fs::File::open(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let mut keys = 0;
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", args.file.display(), number + 1);
        let line: Line =
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        let value = match (line.value, line.value_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| anyhow::anyhow!("{}: value_base64: {e}", at()))?,
            _ => anyhow::bail!("{}: give one of value and value_base64", at()),
        };
        let ns = Namespace {
            plugin: line.plugin,
            bucket: line.bucket,
            user: line.user,
        };
        store
            .write(&ns, vec![(line.key, Some(value))], &UNLIMITED)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        keys += 1;
    }
    eprintln!("imported {keys} keys");
    Ok(true)
}

async fn forget(args: &StateForgetArgs) -> anyhow::Result<bool> {
    let store = store(&args.locations)?;
    let mut removed = 0;
    let mut buckets = 0;
    for (ns, _) in store.namespaces().await? {
        if ns.user.as_ref() == Some(&args.user) {
            removed += store.remove(&ns).await?;
            buckets += 1;
        }
    }
    println!(
        "forgot user {}: {removed} keys in {buckets} buckets",
        crate::printable::escape(&args.user)
    );
    Ok(true)
}
