//! Environment variables: a plugin sees only the ones its policy names.

use super::{Capability, Preparing, Reach, Resolving};
use crate::interface::types::Effects;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Where a granted variable's value comes from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnvSource {
    /// Copy the value of this variable of the host's environment.
    pub from_host: Option<String>,
    /// A fixed value (or the fallback when `from_host` is unset).
    pub value: Option<String>,
}

/// A variable the plugin may read, with its value resolved at load time.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvGrant {
    pub name: String,
    pub value: String,
}

/// Values are secrets as often as not: they never appear in debug output.
impl std::fmt::Debug for EnvGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnvGrant({} = <redacted>)", self.name)
    }
}

/// Gives a call's sandbox exactly `vars`: its WASI environment starts
/// empty.
fn apply(vars: &[EnvGrant], wasi: &mut wasmtime_wasi::WasiCtxBuilder) {
    for var in vars {
        wasi.env(&var.name, &var.value);
    }
}

/// The answer to the guest's `host.env(name)`: the granted value, or
/// `None` with the refusal recorded (an error once the call has made more
/// refusals than it may).
pub fn answer(
    vars: &[EnvGrant],
    name: &str,
    denials: &super::denials::Denials,
) -> wasmtime::Result<Option<String>> {
    let granted = vars.iter().find(|var| var.name == name);
    if granted.is_none() {
        denials.refuse(
            super::denials::Rule::NoEnvGrant,
            format!("read the environment variable {name}"),
        )?;
    }
    Ok(granted.map(|var| var.value.clone()))
}

/// What `vars` allow, for `check` and `explain`; never their values.
fn describe(vars: &[EnvGrant]) -> super::Description {
    let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    let mut explained: Vec<String> = names
        .iter()
        .map(|name| format!("{name} (granted; its value is not shown)"))
        .collect();
    if explained.is_empty() {
        explained.push("none: every variable is refused".to_owned());
    }
    super::Description {
        title: "Environment",
        summary: match names.is_empty() {
            true => Vec::new(),
            false => vec![format!("env {}", names.join(", "))],
        },
        explained,
    }
}

/// Resolves the variable `name` from `source`, reading the host environment
/// through `lookup`. `Ok(None)` when the host variable is unset and no
/// fallback value was given: the plugin then sees no such variable.
fn resolve(
    name: &str,
    source: &EnvSource,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<EnvGrant>, String> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(format!("{name:?} is not a valid variable name"));
    }
    let value = match (&source.from_host, &source.value) {
        (None, None) => return Err(format!("{name}: give `from_host`, `value` or both")),
        (Some(host_name), fallback) => lookup(host_name).or_else(|| fallback.clone()),
        (None, Some(value)) => Some(value.clone()),
    };
    Ok(value.map(|value| EnvGrant {
        name: name.to_owned(),
        value,
    }))
}

/// Environment variables: exactly the ones a policy names, whatever the
/// tool declares; values from the policy or, for `from_host`, from the
/// host's secrets.
pub struct Environment;

impl Capability for Environment {
    const SECTION: &'static str = "env";
    type Spec = BTreeMap<String, EnvSource>;
    type Grant = Vec<EnvGrant>;

    fn resolve(
        spec: &BTreeMap<String, EnvSource>,
        host: &Resolving,
    ) -> Result<Vec<EnvGrant>, String> {
        let mut vars = Vec::new();
        for (name, source) in spec {
            vars.extend(resolve(name, source, |name| {
                host.services.secrets.get(name)
            })?);
        }
        Ok(vars)
    }

    fn narrow(vars: &Vec<EnvGrant>, _effects: Effects) -> Vec<EnvGrant> {
        vars.clone()
    }

    fn reach(_vars: &Vec<EnvGrant>) -> Reach {
        Reach::default()
    }

    fn describe(vars: &Vec<EnvGrant>) -> super::Description {
        describe(vars)
    }

    type Call = ();

    fn prepare(vars: &Vec<EnvGrant>, call: &mut Preparing) -> anyhow::Result<()> {
        apply(vars, call.wasi);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(from_host: Option<&str>, value: Option<&str>) -> EnvSource {
        EnvSource {
            from_host: from_host.map(str::to_owned),
            value: value.map(str::to_owned),
        }
    }

    #[test]
    fn host_value_wins_over_fallback() {
        let lookup = |n: &str| (n == "URL").then(|| "http://a".to_owned());
        let grant = resolve("X", &source(Some("URL"), Some("http://b")), lookup).unwrap();
        assert_eq!(grant.unwrap().value, "http://a");
        let grant = resolve("X", &source(Some("NOPE"), Some("http://b")), lookup).unwrap();
        assert_eq!(grant.unwrap().value, "http://b");
        assert!(
            resolve("X", &source(Some("NOPE"), None), lookup)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn rejects_empty_sources_and_bad_names() {
        assert!(resolve("X", &source(None, None), |_| None).is_err());
        assert!(resolve("A=B", &source(None, Some("v")), |_| None).is_err());
    }

    #[test]
    fn debug_output_hides_values() {
        let grant = EnvGrant {
            name: "TOKEN".into(),
            value: "secret".into(),
        };
        assert!(!format!("{grant:?}").contains("secret"));
    }
}
