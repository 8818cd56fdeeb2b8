//! `host new`: a working plugin to start from, in each authoring language —
//! the README's hello, under the name asked for — and the commands that
//! build and serve it.

use crate::cli::{Language, NewArgs};
use crate::plugin::manifest::valid_plugin_name;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

const PYTHON_APP: &str = include_str!("../templates/python-app.py");
const RUST_LIB: &str = include_str!("../templates/rust-lib.rs");
const RUST_MANIFEST: &str = include_str!("../templates/rust-Cargo.toml");
const TYPESCRIPT_INDEX: &str = include_str!("../templates/typescript-index.ts");

/// What marks the host's repository: the SDKs' build entry points.
const PYTHON_BUILD: &str = "plugins/sdk-python/componentize";
const JS_BUILD: &str = "plugins/sdk-js/componentize";
const RUST_SDK: &str = "plugins/sdk";

/// Writes the plugin's folder and prints how to build and serve it. Writes
/// nothing when the name is not a plugin name or the folder exists.
pub fn create(args: &NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    if !valid_plugin_name(name) {
        bail!(
            "{name:?} is not a plugin name: use lower-case letters, digits and single dashes, \
             starting with a letter (e.g. position-sizer)"
        );
    }
    let repo = match &args.repo {
        Some(repo) => repo.clone(),
        None => find_repo(&std::env::current_dir()?)?,
    };
    let folder = args.dir.join(name);
    if folder.exists() {
        bail!(
            "{} exists already: nothing was written (choose another name or --dir)",
            folder.display()
        );
    }
    let plugins = repo.join("plugins");
    match args.language {
        Language::Python | Language::Typescript => {
            // One module, built by its SDK's script.
            let (module, template, build) = match args.language {
                Language::Python => ("app.py", PYTHON_APP, PYTHON_BUILD),
                _ => ("index.ts", TYPESCRIPT_INDEX, JS_BUILD),
            };
            let path = folder.join(module);
            write(&path, &template.replace("__PLUGIN_NAME__", name))?;
            println!("made {}", path.display());
            println!(
                "build it:  {} {} {}",
                repo.join(build).display(),
                folder.display(),
                plugins.join(format!("{name}.wasm")).display()
            );
        }
        Language::Rust => {
            let sdk = repo
                .join(RUST_SDK)
                .canonicalize()
                .with_context(|| format!("the Rust SDK at {}", repo.join(RUST_SDK).display()))?;
            let manifest = RUST_MANIFEST
                .replace("__PLUGIN_NAME__", name)
                .replace("__PLUGIN_SDK__", &sdk.to_string_lossy());
            write(&folder.join("Cargo.toml"), &manifest)?;
            write(
                &folder.join("src/lib.rs"),
                &RUST_LIB.replace("__PLUGIN_NAME__", name),
            )?;
            println!("made {}", folder.display());
            let built = folder
                .join("target/wasm32-wasip2/release")
                .join(format!("{}.wasm", name.replace('-', "_")));
            println!(
                "build it:  cargo build --release --target wasm32-wasip2 --manifest-path {} && cp {} {}",
                folder.join("Cargo.toml").display(),
                built.display(),
                plugins.join(format!("{name}.wasm")).display()
            );
        }
    }
    println!(
        "serve it:  host serve --plugins {}   (its tool: {name}__greet)",
        plugins.display()
    );
    println!(
        "grant it what it needs in {}",
        repo.join("policies").join(format!("{name}.toml")).display()
    );
    Ok(())
}

/// The nearest folder from `start` up that holds the SDKs.
fn find_repo(start: &Path) -> anyhow::Result<PathBuf> {
    start
        .ancestors()
        .find(|dir| {
            dir.join(PYTHON_BUILD).is_file() && dir.join(RUST_SDK).join("Cargo.toml").is_file()
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no host repository (with {PYTHON_BUILD} and {RUST_SDK}) here or above {}: run \
                 `host new` inside it, or pass --repo DIR",
                start.display()
            )
        })
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot make {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
