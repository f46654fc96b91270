//! Building blocks of the OpenAPI document's request schemas. Each request
//! field's schema is made from the rule that checks it (a [`TextField`], a
//! list of allowed values, a cursor format), next to that rule, so the
//! document cannot say one thing while the server does another.
//!
//! [`TextField`]: super::text::TextField

use utoipa::openapi::{
    Object, ObjectBuilder,
    schema::{SchemaType, Type},
};

/// A string that is one of `values`.
pub fn one_of(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

/// A string matching `pattern` (ECMA-262, anchored), at most `max_length` long.
pub fn matching(pattern: &str, max_length: usize, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max_length))
        .pattern(Some(pattern))
        .description(Some(description))
        .build()
}

/// `schema`, or `null` (an optional field that may be sent as `null`).
pub fn or_null(mut schema: Object) -> Object {
    if let SchemaType::Type(kind) = schema.schema_type {
        schema.schema_type = SchemaType::from_iter([kind, Type::Null]);
    }
    schema
}
