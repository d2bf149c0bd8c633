//! Plain-JSON descriptions of the Arrow schemas lensmae writes, as kept in
//! `schemas/`. A test renders the writers' schemas with [`schema_to_json`] and
//! compares them with the committed files, so the documented schema and the
//! written one cannot drift apart.

use arrow_schema::{DataType, Schema};
use serde_json::{json, Map, Value};

/// Field metadata key of a column's description (shown by pyarrow as
/// `field.metadata`, and in a FITS header as TCOMMn).
pub const DESCRIPTION_KEY: &str = "description";
/// Field metadata key of a column's unit (FITS TUNITn), when it has one.
pub const UNIT_KEY: &str = "unit";

/// Short, stable name of an Arrow type.
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 => "string".into(),
        DataType::LargeUtf8 => "large_string".into(),
        DataType::Boolean => "bool".into(),
        DataType::Binary => "binary".into(),
        DataType::FixedSizeList(item, n) => {
            let null = if item.is_nullable() { "" } else { " not null" };
            format!("fixed_size_list<{}: {}{null}>[{n}]", item.name(), type_name(item.data_type()))
        }
        DataType::List(item) => format!("list<{}: {}>", item.name(), type_name(item.data_type())),
        other => format!("{other:?}"),
    }
}

/// The schema as `{"fields": [...], "metadata_keys": [...]}` (metadata values vary
/// per file, so only their keys are part of the schema).
pub fn schema_to_json(schema: &Schema) -> Value {
    let fields: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut obj = Map::new();
            obj.insert("name".into(), json!(f.name()));
            obj.insert("type".into(), json!(type_name(f.data_type())));
            obj.insert("nullable".into(), json!(f.is_nullable()));
            if !f.metadata().is_empty() {
                let meta: std::collections::BTreeMap<_, _> = f.metadata().iter().collect();
                obj.insert("metadata".into(), json!(meta));
            }
            Value::Object(obj)
        })
        .collect();
    let mut keys: Vec<&String> = schema.metadata().keys().collect();
    keys.sort();
    json!({ "fields": fields, "metadata_keys": keys })
}
