//! A plugin's entry points: the functions of the `handler` interface it
//! exports.
//!
//! The generated bindings fetch and type-check every one of them each time
//! an instance is made, which was a third of instantiating a small plugin,
//! while a call uses one. Here a component's exports are found once, when it
//! is prepared; a call fetches and type-checks only the function it calls.
//! [`Handler::check_types`] checks them all, once, when the plugin loads.

use super::state::CallState;
use crate::interface::INTERFACE_VERSION;
use crate::interface::mcp_host::plugin::types::{
    Completion, CompletionTarget, Error, Manifest, PromptResult, ResourceContents, ToolResult,
};
use wasmtime::Store;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, Instance, Lift, Lower, TypedFunc,
};

/// Where a component keeps the handler's functions.
pub struct Exports {
    describe: ComponentExportIndex,
    call_tool: ComponentExportIndex,
    read_resource: ComponentExportIndex,
    get_prompt: ComponentExportIndex,
    complete: ComponentExportIndex,
}

impl Exports {
    /// Finds the handler's functions in `component`, or says which is missing.
    pub fn find(component: &Component) -> anyhow::Result<Exports> {
        let interface_name = format!("mcp-host:plugin/handler@{INTERFACE_VERSION}");
        let interface = component
            .get_export_index(None, &interface_name)
            .ok_or_else(|| anyhow::anyhow!("it does not export {interface_name}"))?;
        let function = |name: &str| {
            component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| anyhow::anyhow!("its {interface_name} has no `{name}` function"))
        };
        Ok(Exports {
            describe: function("describe")?,
            call_tool: function("call-tool")?,
            read_resource: function("read-resource")?,
            get_prompt: function("get-prompt")?,
            complete: function("complete")?,
        })
    }
}

/// The handler of one instance.
pub struct Handler<'a> {
    instance: Instance,
    exports: &'a Exports,
}

impl<'a> Handler<'a> {
    pub(super) fn new(instance: Instance, exports: &'a Exports) -> Self {
        Handler { instance, exports }
    }

    /// Checks that every function has the type this host calls it with, so
    /// that a component that does not fit fails when it loads rather than on
    /// its first call.
    pub fn check_types(&self, store: &mut Store<CallState>) -> wasmtime::Result<()> {
        self.describe(store)?;
        self.call_tool(store)?;
        self.read_resource(store)?;
        self.get_prompt(store)?;
        self.complete(store)?;
        Ok(())
    }

    pub async fn call_describe(&self, store: &mut Store<CallState>) -> wasmtime::Result<Manifest> {
        let (manifest,) = self.describe(store)?.call_async(store, ()).await?;
        Ok(manifest)
    }

    pub async fn call_call_tool(
        &self,
        store: &mut Store<CallState>,
        name: &str,
        arguments: &str,
    ) -> wasmtime::Result<ToolResult> {
        let function = self.call_tool(store)?;
        let (result,) = function.call_async(store, (name, arguments)).await?;
        Ok(result)
    }

    pub async fn call_read_resource(
        &self,
        store: &mut Store<CallState>,
        uri: &str,
    ) -> wasmtime::Result<Result<Vec<ResourceContents>, Error>> {
        let (result,) = self.read_resource(store)?.call_async(store, (uri,)).await?;
        Ok(result)
    }

    pub async fn call_get_prompt(
        &self,
        store: &mut Store<CallState>,
        name: &str,
        arguments: &[(String, String)],
    ) -> wasmtime::Result<Result<PromptResult, Error>> {
        let function = self.get_prompt(store)?;
        let (result,) = function.call_async(store, (name, arguments)).await?;
        Ok(result)
    }

    pub async fn call_complete(
        &self,
        store: &mut Store<CallState>,
        target: &CompletionTarget,
        argument: &str,
        value: &str,
        context: &[(String, String)],
    ) -> wasmtime::Result<Result<Completion, Error>> {
        let function = self.complete(store)?;
        let (result,) = function
            .call_async(store, (target, argument, value, context))
            .await?;
        Ok(result)
    }

    /// The function at `index` as a `P -> R` function, or why it is not one.
    fn typed<P, R>(
        &self,
        store: &mut Store<CallState>,
        name: &str,
        index: &ComponentExportIndex,
    ) -> wasmtime::Result<TypedFunc<P, R>>
    where
        P: ComponentNamedList + Lower,
        R: ComponentNamedList + Lift,
    {
        self.instance.get_typed_func(store, index).map_err(|e| {
            e.context(format!(
                "its `{name}` function does not have the type wit/plugin.wit gives it"
            ))
        })
    }

    // Each function, type-checked against the signature the host calls it
    // with.

    fn describe(&self, store: &mut Store<CallState>) -> wasmtime::Result<Describe> {
        self.typed(store, "describe", &self.exports.describe)
    }

    fn call_tool<'p>(&self, store: &mut Store<CallState>) -> wasmtime::Result<CallTool<'p>> {
        self.typed(store, "call-tool", &self.exports.call_tool)
    }

    fn read_resource<'p>(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<ReadResource<'p>> {
        self.typed(store, "read-resource", &self.exports.read_resource)
    }

    fn get_prompt<'p>(&self, store: &mut Store<CallState>) -> wasmtime::Result<GetPrompt<'p>> {
        self.typed(store, "get-prompt", &self.exports.get_prompt)
    }

    fn complete<'p>(&self, store: &mut Store<CallState>) -> wasmtime::Result<Complete<'p>> {
        self.typed(store, "complete", &self.exports.complete)
    }
}

// The handler's functions, typed as `wit/plugin.wit` declares them.
type Describe = TypedFunc<(), (Manifest,)>;
type CallTool<'p> = TypedFunc<(&'p str, &'p str), (ToolResult,)>;
type ReadResource<'p> = TypedFunc<(&'p str,), (Result<Vec<ResourceContents>, Error>,)>;
type GetPrompt<'p> = TypedFunc<(&'p str, &'p [(String, String)]), (Result<PromptResult, Error>,)>;
type Complete<'p> = TypedFunc<
    (
        &'p CompletionTarget,
        &'p str,
        &'p str,
        &'p [(String, String)],
    ),
    (Result<Completion, Error>,),
>;
