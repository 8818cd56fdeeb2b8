//! JSON Schemas of argument and output types, in plain JSON Schema.
//!
//! schemars marks Rust integer and float types with formats of its own
//! (`uint`, `uint32`, `int64`, `double`, …). JSON Schema defines no such
//! formats, and MCP clients that check schemas (the TypeScript SDK, the
//! Inspector) warn about every one. What they stood for is written as
//! `minimum`/`maximum` instead, which every validator enforces.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema};

/// The schema of `T`, serialised.
pub(crate) fn schema_for<T: JsonSchema>() -> String {
    SchemaSettings::default()
        .with_transform(RecursiveTransform(plain_numbers))
        .into_generator()
        .into_root_schema_for::<T>()
        .as_value()
        .to_string()
}

/// Replaces a numeric schemars format with the bounds it stood for.
fn plain_numbers(schema: &mut Schema) {
    let Some(format) = schema.get("format").and_then(|f| f.as_str()) else {
        return;
    };
    let (minimum, maximum): (Option<i64>, Option<i64>) = match format {
        "int8" => (Some(i8::MIN.into()), Some(i8::MAX.into())),
        "int16" => (Some(i16::MIN.into()), Some(i16::MAX.into())),
        "int32" => (Some(i32::MIN.into()), Some(i32::MAX.into())),
        "uint8" => (Some(0), Some(u8::MAX.into())),
        "uint16" => (Some(0), Some(u16::MAX.into())),
        "uint32" => (Some(0), Some(u32::MAX.into())),
        "uint" | "uint64" | "uint128" => (Some(0), None),
        "int" | "int64" | "int128" | "float" | "double" => (None, None),
        _ => return,
    };
    schema.remove("format");
    for (key, bound) in [("minimum", minimum), ("maximum", maximum)] {
        if let Some(bound) = bound
            && schema.get(key).is_none()
        {
            schema.insert(key.into(), bound.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Args {
        count: u32,
        limit: Option<usize>,
        offset: i32,
        ratio: f64,
        small: u8,
        nested: Vec<Inner>,
    }

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        period: u16,
    }

    #[test]
    fn numeric_formats_become_bounds() {
        let schema = schema_for::<Args>();
        assert!(!schema.contains("\"format\""), "{schema}");
        let value: serde_json::Value = serde_json::from_str(&schema).unwrap();
        let count = &value["properties"]["count"];
        assert_eq!(count["minimum"], 0);
        assert_eq!(count["maximum"], u32::MAX);
        assert_eq!(value["properties"]["offset"]["minimum"], i32::MIN);
        assert_eq!(
            value["$defs"]["Inner"]["properties"]["period"]["maximum"],
            65535
        );
    }
}
