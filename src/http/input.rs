//! Reading request input: JSON bodies and query strings. Every error is told
//! in the API's words (the field, what it must be, the allowed range), never a
//! deserialiser's; this is the one place that translates them.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::mime;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorKind};
use crate::domain::InvalidField;

/// A JSON body (`Content-Type: application/json` or `+json`), at most
/// `server.max_body_bytes`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json =
            req.mime_type().ok().flatten().is_some_and(|mime| {
                mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON)
            });
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::new(
                    ErrorKind::UnsupportedMediaType,
                    "send the body as Content-Type: application/json",
                ));
            }
            let bytes = body.await.map_err(payload_error)?;
            decode_json(&bytes).map(Json)
        })
    }
}

/// A query string; unknown parameters are refused by the types that say so.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(decode_query(req.query_string()).map(Query))
    }
}

fn payload_error(error: actix_web::Error) -> ApiError {
    match error.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ApiError::new(
            ErrorKind::PayloadTooLarge,
            "the body is larger than this server accepts (server.max_body_bytes)",
        ),
        _ => ApiError::new(ErrorKind::MalformedJson, "the body could not be read"),
    }
}

/// Decodes a JSON body: syntax errors are 400, everything else 422 with the
/// field. Every body is an object (serde would read an array into a struct by
/// position, which no client means).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(InvalidField::new("body", "must be an object").into());
    }
    // The usual case, straight from the bytes: no path tracking, no tree.
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    if let Ok(value) = T::deserialize(&mut deserializer) {
        if deserializer.end().is_ok() {
            return Ok(value);
        }
    }
    // Otherwise again, slowly, so a refusal names the field.
    if bytes.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        // JSON Schema counts 3.0 and 3e0 as the integer 3, and so do we.
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|error| json_error("", &error))?;
        integral_floats_as_integers(&mut value);
        return serde_path_to_error::deserialize(value)
            .map_err(|error| json_error(&error.path().to_string(), error.inner()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| json_error(&error.path().to_string(), error.inner()))?;
    deserializer.end().map_err(|error| json_error("", &error))?;
    Ok(value)
}

/// Turns every number with no fractional part into an integer (when it fits
/// one), so an integer field takes `3.0` as JSON Schema does.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64() {
                if float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0 {
                    *value = Value::from(float as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

fn json_error(path: &str, inner: &serde_json::Error) -> ApiError {
    {
        match inner.classify() {
            serde_json::error::Category::Data => {
                ApiError::from(field_error(path, &inner.to_string()))
            }
            serde_json::error::Category::Eof => ApiError::new(
                ErrorKind::MalformedJson,
                "the body is not valid JSON: it ends too early",
            ),
            _ => ApiError::new(
                ErrorKind::MalformedJson,
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    inner.line(),
                    inner.column()
                ),
            ),
        }
    }
}

/// Decodes a query string; every error is 422 with the parameter.
pub fn decode_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        ApiError::from(field_error(
            &error.path().to_string(),
            &error.inner().to_string(),
        ))
    })
}

/// A page cursor that is a position number (`^[0-9]{1,19}$`, as the
/// previous page's `next_cursor` gave it); `None` for the first page.
pub fn numeric_cursor(raw: Option<&str>) -> Result<Option<u64>, InvalidField> {
    raw.map(|raw| {
        raw.parse::<u64>()
            .ok()
            .filter(|_| raw.len() <= 19 && raw.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| InvalidField::new("cursor", "must be a next_cursor"))
    })
    .transpose()
}

/// One deserialiser message, at `path`, in the API's words.
pub fn field_error(path: &str, message: &str) -> InvalidField {
    let message = message.split(" at line ").next().unwrap_or(message).trim();
    let at = |name: &str| match path {
        "" | "." => name.to_owned(),
        parent => format!("{parent}.{name}"),
    };
    let here = match path {
        "" | "." => "body".to_owned(),
        path => path.to_owned(),
    };
    if let Some(name) = between(message, "missing field `", "`") {
        return InvalidField::new(at(name), "is required");
    }
    if let Some(name) = between(message, "duplicate field `", "`") {
        return InvalidField::new(at(name), "is given twice");
    }
    if let Some(name) = between(message, "unknown field `", "`") {
        let known = known_names(message);
        let reason = if known.is_empty() {
            "is not a field of this request".to_owned()
        } else {
            format!("is not a field of this request; known: {known}")
        };
        // The path already ends at the unknown field.
        let field = if path.ends_with(name) {
            path.to_owned()
        } else {
            at(name)
        };
        return InvalidField::new(field, reason);
    }
    if let Some(value) = between(message, "unknown variant `", "`") {
        let known = known_names(message);
        return InvalidField::new(here, format!("{value:?} is not one of: {known}"));
    }
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .or_else(|| message.strip_prefix("invalid length "))
    {
        let expected = rest.rsplit_once(", expected ").map_or("", |(_, e)| e);
        return InvalidField::new(here, format!("must be {}", what(expected)));
    }
    // Messages of `FromStr` (query strings) and of our own types.
    let reason = match message {
        m if m.contains("invalid digit") || m.contains("parse integer") => "must be a whole number",
        m if m.contains("too large") || m.contains("too small") => {
            "is out of range for a whole number"
        }
        m if m.contains("float literal") => "must be a number",
        m if m.contains("`true` or `false`") => "must be true or false",
        m if m.contains("recursion limit") => "is nested too deeply",
        m => return InvalidField::new(here, m.to_owned()),
    };
    InvalidField::new(here, reason)
}

/// The text between `start` and the next `end`.
fn between<'a>(message: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &message[message.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// "expected one of `a`, `b`" → "a, b".
fn known_names(message: &str) -> String {
    let Some((_, tail)) = message.split_once("expected ") else {
        return String::new();
    };
    tail.split('`')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A serde expectation in the API's words.
fn what(expected: &str) -> String {
    let range = |max: &str| format!("a whole number from 0 to {max}");
    match expected.trim() {
        "u8" => range("255"),
        "u16" => range("65535"),
        "u32" => range("4294967295"),
        "u64" | "usize" => range("18446744073709551615"),
        "i8" | "i16" | "i32" | "i64" | "isize" | "i128" | "u128" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a string" | "a borrowed string" | "string" => "text (a JSON string)".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a character" | "char" => "a single character".into(),
        "a sequence" | "sequence" => "an array".into(),
        "a map" | "map" => "an object".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object".into(),
        e if e.starts_with("enum ") || e.starts_with("variant identifier") => {
            "one of the documented values".into()
        }
        e if e.starts_with("one of ") => {
            format!("one of: {}", known_names(&format!("expected {e}")))
        }
        e if e.starts_with("a sequence of ") || e.starts_with("an array") => "an array".into(),
        e if e.starts_with("a ") || e.starts_with("an ") => e.to_owned(),
        "" => "of another type".into(),
        e => e.to_owned(),
    }
}

/// Deserialises a field that is present, refusing `null` where the schema
/// does (`#[serde(default, deserialize_with = "present")]` on an `Option`:
/// left out is `None`, `null` is a type error).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Deserialises a struct from a JSON object only: serde also builds one from
/// an array of its fields in order, which no schema here allows.
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::Deserialize;
    let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
    serde_json::from_value(serde_json::Value::Object(map)).map_err(serde::de::Error::custom)
}

/// `object` for an optional struct: `null` is `None`.
pub fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::Deserialize;
    match Option::<serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(map) => serde_json::from_value(serde_json::Value::Object(map))
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn a_numeric_cursor_is_one_to_nineteen_digits() {
        assert_eq!(numeric_cursor(None), Ok(None));
        assert_eq!(numeric_cursor(Some("0")), Ok(Some(0)));
        assert_eq!(
            numeric_cursor(Some("9223372036854775807")),
            Ok(Some(i64::MAX as u64))
        );
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1a",
            "00000000000000000001",
            "18446744073709551616",
        ] {
            let refused = numeric_cursor(Some(bad)).unwrap_err();
            assert_eq!(refused.field, "cursor", "{bad:?}");
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Line {
        sku: String,
        quantity: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Line>,
        #[serde(default)]
        express: bool,
        #[serde(default)]
        state: Option<State>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum State {
        Packed,
        Shipped,
    }

    fn refused(body: &str) -> (String, String) {
        let error = decode_json::<Order>(body.as_bytes()).unwrap_err();
        let field = error.extensions["errors"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (field, error.detail)
    }

    /// Fragments only a deserialiser writes.
    const DESERIALISER: &[&str] = &[
        "invalid type",
        "invalid value",
        "expected",
        "u32",
        "u64",
        "usize",
        "line 1",
        "column",
        "struct",
        "variant",
        "sequence",
        "deserialize",
    ];

    #[test]
    fn each_kind_of_bad_body_names_its_field_in_the_apis_words() {
        for (body, field, words) in [
            (
                r#"{"items": [{"sku": "A", "quantity": "two"}]}"#,
                "items[0].quantity",
                "whole number from 0 to 4294967295",
            ),
            (
                r#"{"items": [{"sku": "A", "quantity": -1}]}"#,
                "items[0].quantity",
                "whole number from 0",
            ),
            (
                r#"{"items": [{"sku": "A", "quantity": 4294967296}]}"#,
                "items[0].quantity",
                "4294967295",
            ),
            (
                r#"{"items": [{"sku": "A", "quantity": 1.5}]}"#,
                "items[0].quantity",
                "whole number",
            ),
            (
                r#"{"items": [{"sku": 5, "quantity": 1}]}"#,
                "items[0].sku",
                "text",
            ),
            (
                r#"{"items": [{"quantity": 1}]}"#,
                "items[0].sku",
                "is required",
            ),
            (r#"{"items": {}}"#, "items", "an array"),
            (
                r#"{"items": [], "express": "yes"}"#,
                "express",
                "true or false",
            ),
            (
                r#"{"items": [], "state": "lost"}"#,
                "state",
                "packed, shipped",
            ),
            (
                r#"{"items": [], "discount": 5}"#,
                "discount",
                "known: items, express, state",
            ),
            (r#"[1, 2]"#, "body", "an object"),
        ] {
            let (got_field, detail) = refused(body);
            assert_eq!(got_field, field, "{body}: {detail}");
            assert!(detail.contains(words), "{body}: {detail}");
            for fragment in DESERIALISER {
                assert!(
                    !detail.contains(fragment),
                    "{body}: {detail:?} has {fragment:?}"
                );
            }
        }
    }

    #[test]
    fn integral_floats_are_integers_and_fractions_are_not() {
        let order: Order =
            decode_json(br#"{"items": [{"sku": "A.1", "quantity": 3.0}], "express": false}"#)
                .unwrap();
        assert_eq!(order.items[0].quantity, 3);
        let order: Order = decode_json(br#"{"items": [{"sku": "A", "quantity": 2e0}]}"#).unwrap();
        assert_eq!(order.items[0].quantity, 2);
        let (field, detail) = refused(r#"{"items": [{"sku": "A", "quantity": 2.5}]}"#);
        assert_eq!(field, "items[0].quantity", "{detail}");
        let (field, _) = refused(r#"{"items": [{"sku": "A", "quantity": 1e300}]}"#);
        assert_eq!(field, "items[0].quantity");
    }

    #[test]
    fn syntax_errors_are_malformed_json_without_a_deserialisers_words() {
        for body in ["{\"items\": ", "items=1", "{\"items\": []} trailing", ""] {
            let error = decode_json::<Order>(body.as_bytes()).unwrap_err();
            assert_eq!(error.kind, ErrorKind::MalformedJson, "{body}");
            assert!(!error.detail.contains("expected"), "{}", error.detail);
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<u32>,
        cursor: Option<String>,
        in_stock: Option<bool>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        for (query, field, words) in [
            ("limit=ten", "limit", "whole number"),
            ("limit=-1", "limit", "whole number"),
            ("limit=99999999999", "limit", "out of range"),
            ("in_stock=maybe", "in_stock", "true or false"),
            ("colour=red", "colour", "known: limit, cursor, in_stock"),
        ] {
            let error = decode_query::<Page>(query).unwrap_err();
            assert_eq!(error.extensions["errors"][0]["field"], field, "{query}");
            assert!(error.detail.contains(words), "{query}: {}", error.detail);
            assert!(!error.detail.contains("Query"), "{}", error.detail);
        }
        let page: Page = decode_query("limit=5&cursor=abc").unwrap();
        assert_eq!(page.limit, Some(5));
    }
}
