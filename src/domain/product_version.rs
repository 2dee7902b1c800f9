//! A product's version history as rules: the field-level diff between two
//! versions, the entry kept for each version, and rollback, which makes an
//! earlier version's content current again as a new version (history is
//! never rewritten).

use serde_json::{json, Value};

use super::product::{Product, Sku};

/// Why a version was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum VersionCause {
    Created,
    Changed,
    /// The content of version `restored` made current again.
    RolledBack {
        restored: u64,
    },
}

impl VersionCause {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionCause::Created => "created",
            VersionCause::Changed => "changed",
            VersionCause::RolledBack { .. } => "rolled_back",
        }
    }
}

/// One field that differs from the previous version, with its values as
/// JSON text (`None`: the field did not exist on that side, e.g. a variant
/// added or removed).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FieldChange {
    /// `title`, `images`, `skus[CODE].price`, ...
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What the history keeps of one version: the whole product as it was, who
/// made it and why (its author and time are the product's `updated_by` and
/// `updated_at_ms`), and what changed from the version before.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ProductVersion {
    pub cause: VersionCause,
    /// The request that made it (its `X-Correlation-ID`); empty when unknown.
    pub correlation_id: String,
    /// Empty for version 1, which has no previous version.
    pub changes: Vec<FieldChange>,
    pub product: Product,
}

impl ProductVersion {
    /// The entry for `product`, made from `before` (its previous version).
    pub fn new(
        cause: VersionCause,
        correlation_id: &str,
        before: Option<&Product>,
        product: Product,
    ) -> Self {
        Self {
            cause,
            correlation_id: correlation_id.to_owned(),
            changes: before.map_or_else(Vec::new, |b| diff(b, &product)),
            product,
        }
    }
}

fn pairs(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// A product's own fields (not its variants'), by name, as JSON.
fn product_fields(p: &Product) -> [(&'static str, Value); 9] {
    [
        ("status", json!(p.status.as_str())),
        ("title", json!(p.title)),
        ("description", json!(p.description)),
        ("brand", json!(p.brand)),
        ("category", json!(p.category)),
        ("attributes", pairs(&p.attributes)),
        (
            "images",
            Value::Array(
                p.images
                    .iter()
                    .map(|i| json!({"url": i.url, "alt": i.alt}))
                    .collect(),
            ),
        ),
        (
            "options",
            Value::Array(
                p.options
                    .iter()
                    .map(|a| json!({"name": a.name, "values": a.values}))
                    .collect(),
            ),
        ),
        (
            "skus",
            Value::Array(p.skus.iter().map(|s| json!(s.code)).collect()),
        ),
    ]
}

/// A variant's fields, by name, as JSON.
fn sku_fields(s: &Sku) -> [(&'static str, Value); 5] {
    [
        (
            "price",
            json!({"amount": s.price.amount, "currency": s.price.currency}),
        ),
        ("compare_at", json!(s.compare_at)),
        ("options", json!(s.options)),
        ("attributes", pairs(&s.attributes)),
        ("low_stock_threshold", json!(s.low_stock_threshold)),
    ]
}

/// Every field of `after` that differs from `before`: the product's own
/// fields, the list of variant codes (`skus`), then each variant's fields as
/// `skus[CODE].field`; a variant on one side only is one change of the
/// variant as a whole. Versions, times and authors are not content.
pub fn diff(before: &Product, after: &Product) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: String, before: Option<Value>, after: Option<Value>| {
        if before != after {
            out.push(FieldChange {
                field,
                before: before.map(|v| v.to_string()),
                after: after.map(|v| v.to_string()),
            });
        }
    };
    for ((name, old), (_, new)) in product_fields(before)
        .into_iter()
        .zip(product_fields(after))
    {
        push(name.to_owned(), Some(old), Some(new));
    }
    let whole = |s: &Sku| {
        Value::Object(
            sku_fields(s)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    };
    for old in &before.skus {
        match after.skus.iter().find(|s| s.code == old.code) {
            Some(new) => {
                for ((name, was), (_, now)) in sku_fields(old).into_iter().zip(sku_fields(new)) {
                    push(format!("skus[{}].{name}", old.code), Some(was), Some(now));
                }
            }
            None => push(format!("skus[{}]", old.code), Some(whole(old)), None),
        }
    }
    for new in &after.skus {
        if !before.skus.iter().any(|s| s.code == new.code) {
            push(format!("skus[{}]", new.code), None, Some(whole(new)));
        }
    }
    out
}

/// A rollback that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    /// Variants are added and removed by their own routes, which check holds
    /// and orders; a rollback does not bring one back or take one away.
    #[error("version {version} has other variants than the current version (only there: {only_then:?}; only now: {only_now:?}); add or remove variants first")]
    VariantsDiffer {
        version: u64,
        only_then: Vec<String>,
        only_now: Vec<String>,
    },
}

/// The next version of `current` with the content of `earlier` (an earlier
/// version of the same product), made by `by` at `at_ms`; `None` when the
/// content is already the same.
pub fn rolled_back(
    current: &Product,
    earlier: &Product,
    by: &str,
    at_ms: u64,
) -> Result<Option<Product>, RollbackError> {
    let codes = |p: &Product| {
        let mut codes: Vec<String> = p.skus.iter().map(|s| s.code.clone()).collect();
        codes.sort_unstable();
        codes
    };
    let (then, now) = (codes(earlier), codes(current));
    if then != now {
        return Err(RollbackError::VariantsDiffer {
            version: earlier.version,
            only_then: then.iter().filter(|c| !now.contains(c)).cloned().collect(),
            only_now: now.iter().filter(|c| !then.contains(c)).cloned().collect(),
        });
    }
    let mut next = current.clone();
    next.status = earlier.status;
    next.title = earlier.title.clone();
    next.description = earlier.description.clone();
    next.brand = earlier.brand.clone();
    next.category = earlier.category.clone();
    next.attributes = earlier.attributes.clone();
    next.images = earlier.images.clone();
    next.options = earlier.options.clone();
    // In the earlier order, each with its (unchanging) id.
    next.skus = earlier
        .skus
        .iter()
        .map(|sku| {
            let id = current
                .skus
                .iter()
                .find(|s| s.code == sku.code)
                .map_or(sku.id, |s| s.id);
            Sku { id, ..sku.clone() }
        })
        .collect();
    if next == *current {
        return Ok(None);
    }
    next.version = current.version + 1;
    next.updated_at_ms = at_ms;
    next.updated_by = by.to_owned();
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::{Image, Money, ProductStatus};

    fn sku(code: &str, id: u64, price: i64) -> Sku {
        Sku {
            id,
            code: code.into(),
            price: Money {
                amount: price,
                currency: "EUR".into(),
            },
            compare_at: None,
            options: vec![],
            attributes: vec![],
            low_stock_threshold: 5,
        }
    }

    fn product() -> Product {
        Product {
            id: 7,
            tenant: "t".into(),
            version: 1,
            status: ProductStatus::Active,
            title: "Tee".into(),
            description: String::new(),
            brand: String::new(),
            category: "shirts".into(),
            attributes: vec![],
            images: vec![],
            options: vec![],
            skus: vec![sku("A", 1, 100), sku("B", 2, 200)],
            created_at_ms: 1,
            updated_at_ms: 1,
            updated_by: "user:1".into(),
        }
    }

    #[test]
    fn the_diff_names_each_changed_field_with_both_values_and_ignores_versions() {
        let before = product();
        let mut after = before.clone();
        after.version = 2;
        after.updated_at_ms = 9;
        after.updated_by = "user:2".into();
        assert!(diff(&before, &after).is_empty());

        after.title = "Tee 2".into();
        after.skus[1].price.amount = 250;
        after.images.push(Image {
            url: "https://x/1.png".into(),
            alt: "front".into(),
        });
        let changes = diff(&before, &after);
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["title", "images", "skus[B].price"]);
        assert_eq!(changes[0].before.as_deref(), Some("\"Tee\""));
        assert_eq!(changes[0].after.as_deref(), Some("\"Tee 2\""));
        assert_eq!(
            changes[2].after.as_deref(),
            Some(r#"{"amount":250,"currency":"EUR"}"#)
        );
    }

    #[test]
    fn a_variant_on_one_side_only_is_one_change() {
        let before = product();
        let mut after = before.clone();
        after.skus.remove(0);
        after.skus.push(sku("C", 3, 300));
        let fields: Vec<String> = diff(&before, &after).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["skus", "skus[A]", "skus[C]"]);
    }

    #[test]
    fn rollback_restores_content_as_the_next_version() {
        let v1 = product();
        let mut v2 = v1.clone();
        v2.version = 2;
        v2.title = "Changed".into();
        v2.status = ProductStatus::Archived;
        v2.skus[0].price.amount = 150;
        v2.skus.swap(0, 1);
        let v3 = rolled_back(&v2, &v1, "user:9", 50).unwrap().unwrap();
        assert_eq!(v3.version, 3);
        assert_eq!((v3.updated_at_ms, v3.updated_by.as_str()), (50, "user:9"));
        assert!(diff(&v1, &v3).is_empty(), "{:?}", diff(&v1, &v3));
        assert_eq!(v3.created_at_ms, v1.created_at_ms);
        // Rolling back to what is already current makes no version.
        assert_eq!(rolled_back(&v3, &v1, "user:9", 60).unwrap(), None);
    }

    #[test]
    fn rollback_never_adds_or_removes_a_variant() {
        let v1 = product();
        let mut v2 = v1.clone();
        v2.version = 2;
        v2.skus.push(sku("C", 3, 300));
        assert_eq!(
            rolled_back(&v2, &v1, "user:9", 50),
            Err(RollbackError::VariantsDiffer {
                version: 1,
                only_then: vec![],
                only_now: vec!["C".into()],
            })
        );
    }
}
