//! Schema pieces the contract shares. Each says exactly what the server
//! checks (a value the schema allows is accepted, one it refuses is refused),
//! so a client generated from `/openapi.json` and the server agree.

use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use crate::domain::product::PRICE_MAX_MINOR;

/// Printable text without control characters (tabs and new lines allowed).
pub const TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$";
/// A single line with at least one visible character and no control characters.
pub const LINE_PATTERN: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// Letters, digits and `. _ : @ -` (SKU codes, warehouses).
pub const CODE_PATTERN: &str = "^[A-Za-z0-9._:@-]+$";
/// `local@domain.tld`: printable ASCII, no spaces, one `@`, a dot inside the domain.
pub const EMAIL_PATTERN: &str = "^[\\x21-\\x3f\\x41-\\x7e]{1,64}@[\\x21-\\x2d\\x2f-\\x3f\\x41-\\x7e]+(\\.[\\x21-\\x2d\\x2f-\\x3f\\x41-\\x7e]+)+$";
/// A payment method token of the provider.
pub const PAYMENT_METHOD_PATTERN: &str = "^pm_[A-Za-z0-9_]{1,60}$";
/// ISO 3166-1 alpha-2.
pub const COUNTRY_PATTERN: &str = "^[A-Z]{2}$";
/// Most units one warehouse holds, and the largest adjustment (`stock.units_max`).
pub const UNITS_MAX: f64 = 1_000_000_000_000.0;

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer(min: f64, max: f64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(min))
        .maximum(Some(max))
}

/// A SKU code: 1..=64 letters, digits or `. _ : @ -`, unique in the marketplace.
pub fn sku_code() -> Schema {
    string()
        .pattern(Some(CODE_PATTERN))
        .min_length(Some(1))
        .max_length(Some(64))
        .examples(["TEE-BLK-M"])
        .into()
}

/// A warehouse name: 1..=64 letters, digits or `. _ : @ -`.
pub fn warehouse() -> Schema {
    string()
        .pattern(Some(CODE_PATTERN))
        .min_length(Some(1))
        .max_length(Some(64))
        .examples(["main"])
        .into()
}

/// On-hand units per warehouse: at most 64 warehouses (`stock.warehouses_max`),
/// 0..=`stock.units_max` units each.
pub fn warehouses() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(warehouse()))
        .additional_properties(Some(integer(0.0, UNITS_MAX)))
        .max_properties(Some(64))
        .into()
}

/// Shipping picked per store at checkout: store id (a UUID) → method code,
/// at most 50 stores.
pub fn shipping_choices() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(string().format(Some(
            utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid),
        ))))
        .additional_properties(Some(string().pattern(Some("^[a-z0-9_-]{1,32}$"))))
        .max_properties(Some(50))
        .examples([serde_json::json!({"0190f3a2-7c1e-7d4b-9a51-2f6f1e0c9b10": "express"})])
        .into()
}

/// Free-form attributes: at most 32, names 1..=64 characters, values at most
/// 256, no control characters but tabs and new lines.
pub fn attributes() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            string()
                .min_length(Some(1))
                .max_length(Some(64))
                .pattern(Some(TEXT_PATTERN)),
        ))
        .additional_properties(Some(
            string().max_length(Some(256)).pattern(Some(TEXT_PATTERN)),
        ))
        .max_properties(Some(32))
        .into()
}

/// A relative correction: never 0, at most `stock.units_max` either way.
pub fn delta() -> Schema {
    AnyOfBuilder::new()
        .item(integer(1.0, UNITS_MAX))
        .item(integer(-UNITS_MAX, -1.0))
        .description(Some(
            "units to add (positive) or remove (negative); never 0",
        ))
        .into()
}

/// An amount in minor units.
/// An absolute http(s) image URL (`product::is_image_url`).
pub fn image_url() -> Schema {
    string()
        .pattern(Some(crate::domain::product::IMAGE_URL_PATTERN))
        .min_length(Some(1))
        .max_length(Some(crate::domain::product::IMAGE_URL_MAX_CHARS))
        .examples(["https://cdn.example.com/tee-front.jpg"])
        .into()
}

/// An option axis name or value: 1..=64 characters without control characters.
pub fn option_text() -> Schema {
    string()
        .min_length(Some(1))
        .max_length(Some(crate::domain::product::OPTION_TEXT_MAX_CHARS))
        .pattern(Some(TEXT_PATTERN))
        .into()
}

/// The values of one option axis: 1..=100 distinct texts.
pub fn option_axis_values() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(option_text()))
        .min_items(Some(1))
        .max_items(Some(crate::domain::product::OPTION_VALUES_MAX))
        .unique_items(true)
        .into()
}

/// A variant's option values, one per axis (at most 3).
pub fn option_values() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(option_text()))
        .max_items(Some(crate::domain::product::OPTION_AXES_MAX))
        .into()
}

pub fn amount() -> Schema {
    integer(0.0, PRICE_MAX_MINOR as f64)
        .description(Some("minor units (cents for USD)"))
        .into()
}

/// An ISO 4217 currency code one can price in.
pub fn currency() -> Schema {
    use iso_currency::IntoEnumIterator;
    let mut codes: Vec<&'static str> = iso_currency::Currency::iter()
        .map(|c| c.code())
        .filter(|code| crate::domain::product::is_currency(code))
        .collect();
    codes.sort_unstable();
    string()
        .enum_values(Some(codes))
        .description(Some("ISO 4217 code, e.g. USD"))
        .into()
}

/// An e-mail address (at most 254 characters).
pub fn email() -> Schema {
    string()
        .pattern(Some(EMAIL_PATTERN))
        .max_length(Some(254))
        .examples(["ana@example.com"])
        .into()
}

/// A password as the policy takes it: `auth.password_min_chars` (12) to
/// `auth.password_max_chars` (128) characters, no control characters. The
/// policy also refuses common passwords, fewer than 5 different characters
/// and the account's own address (422).
pub fn password() -> Schema {
    string()
        .min_length(Some(12))
        .max_length(Some(128))
        .pattern(Some("^[^\\u0000-\\u001f\\u007f-\\u009f]*$"))
        .into()
}

/// A shipping address: 1..=`orders.shipping_address_max_chars` (500)
/// characters on one line with something visible.
pub fn shipping_address() -> Schema {
    string()
        .min_length(Some(1))
        .max_length(Some(500))
        .pattern(Some(LINE_PATTERN))
        .examples(["1 Main St, Springfield"])
        .into()
}

/// A payment method token of the provider (sandbox: `pm_card_visa`,
/// `pm_card_declined`, `pm_async`, `pm_no_response`, ...).
pub fn payment_method() -> Schema {
    string()
        .pattern(Some(PAYMENT_METHOD_PATTERN))
        .examples(["pm_card_visa"])
        .into()
}

/// An ISO 3166-1 alpha-2 country code.
pub fn country() -> Schema {
    string()
        .pattern(Some(COUNTRY_PATTERN))
        .examples(["DE"])
        .into()
}

/// Countries a store ships to: at most 250, each once.
pub fn countries() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(country()))
        .max_items(Some(250))
        .unique_items(true)
        .into()
}

/// A one-line reason (returns, corrections): 1..=`max` characters.
fn reason(max: usize) -> Schema {
    string()
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(LINE_PATTERN))
        .into()
}

pub fn return_reason() -> Schema {
    reason(500)
}

pub fn adjustment_reason() -> Schema {
    reason(200)
}

/// The SKU codes of a drop: 1..=`drops.skus_max` (100), each once.
pub fn drop_skus() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(sku_code()))
        .min_items(Some(1))
        .max_items(Some(100))
        .unique_items(true)
        .into()
}

/// A store's name: 1..=100 characters, something visible, no control characters.
pub fn store_name() -> Schema {
    reason(100)
}

/// Wraps a schema for `schema_with`.
pub fn boxed(schema: Schema) -> RefOr<Schema> {
    RefOr::T(schema)
}

/// Any JSON value (a field's value in a version's diff: text, a number, a
/// list or an object, or null).
pub fn any_json() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_currency_list_is_iso_4217_without_the_non_currencies() {
        let Schema::Object(object) = currency() else {
            panic!("an object schema")
        };
        let codes = object.enum_values.unwrap();
        assert!(codes.len() > 150, "{}", codes.len());
        assert!(codes.contains(&"USD".into()) && codes.contains(&"EUR".into()));
        assert!(!codes.contains(&"XXX".into()) && !codes.contains(&"XTS".into()));
    }
}
