use plugin_sdk::prelude::*;

/// Arguments of `greet`.
#[derive(Deserialize, JsonSchema)]
struct Greet {
    /// Who to greet.
    name: String,
}

fn plugin() -> Plugin {
    Plugin::new("__PLUGIN_NAME__", env!("CARGO_PKG_VERSION")).tool(
        Tool::new("greet", "Greet someone by name.").read_only(),
        |args: Greet| Ok(format!("Hello, {}!", args.name)),
    )
}

plugin_sdk::export_plugin!(plugin);
