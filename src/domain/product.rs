//! Products and their SKUs as sellers create them: validation rules and the
//! stored form. A product is immutable in the engine core.

use std::collections::BTreeMap;

use super::ids::{InvalidField, SkuCode, SkuId, TenantKey};

pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 5_000;
pub const CATEGORY_MAX_CHARS: usize = 100;
pub const ATTRIBUTES_MAX: usize = 32;
pub const ATTRIBUTE_KEY_MAX_CHARS: usize = 64;
pub const ATTRIBUTE_VALUE_MAX_CHARS: usize = 256;
pub const SKUS_PER_PRODUCT_MAX: usize = 100;
/// Largest price in minor units (10 billion in major units of a 2-decimal currency).
pub const PRICE_MAX_MINOR: i64 = 1_000_000_000_000;

/// Whether `code` is an ISO 4217 currency one can price in (not XXX, "no
/// currency", nor XTS, the testing code).
pub fn is_currency(code: &str) -> bool {
    code.len() == 3
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && !matches!(code, "XXX" | "XTS")
        && iso_currency::Currency::from_code(code).is_some()
}

/// An amount in minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    pub fn parse(field: &'static str, amount: i64, currency: &str) -> Result<Self, InvalidField> {
        if !(0..=PRICE_MAX_MINOR).contains(&amount) {
            return Err(InvalidField::new(
                field,
                format!("amount must be 0..={PRICE_MAX_MINOR} minor units"),
            ));
        }
        if !is_currency(currency) {
            return Err(InvalidField::new(
                field,
                "currency must be an ISO 4217 code in upper case, e.g. USD or EUR",
            ));
        }
        Ok(Self {
            amount,
            currency: currency.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Sku {
    pub id: u64,
    pub code: String,
    pub price: Money,
    pub attributes: Vec<(String, String)>,
    pub low_stock_threshold: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Product {
    pub id: u128,
    pub tenant: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub attributes: Vec<(String, String)>,
    pub skus: Vec<Sku>,
    pub created_at_ms: u64,
}

/// A SKU as a seller submits it.
#[derive(Debug, Clone)]
pub struct NewSku {
    pub code: String,
    pub price_amount: i64,
    pub price_currency: String,
    pub attributes: BTreeMap<String, String>,
    pub low_stock_threshold: Option<u64>,
}

/// A product as a seller submits it.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub title: String,
    pub description: String,
    pub category: String,
    pub attributes: BTreeMap<String, String>,
    pub skus: Vec<NewSku>,
}

/// A product that passed validation; SKU ids are assigned when it is stored.
#[derive(Debug, Clone)]
pub struct ValidProduct {
    pub title: String,
    pub description: String,
    pub category: String,
    pub attributes: Vec<(String, String)>,
    pub skus: Vec<ValidSku>,
}

#[derive(Debug, Clone)]
pub struct ValidSku {
    pub code: SkuCode,
    pub price: Money,
    pub attributes: Vec<(String, String)>,
    pub low_stock_threshold: Option<u64>,
}

impl ValidProduct {
    /// Builds the stored product once ids are known.
    pub fn into_product(
        self,
        id: u128,
        tenant: &TenantKey,
        sku_ids: &[SkuId],
        default_low_stock_threshold: u64,
        created_at_ms: u64,
    ) -> Product {
        let skus = self
            .skus
            .into_iter()
            .zip(sku_ids)
            .map(|(sku, id)| Sku {
                id: id.0,
                code: sku.code.into_inner(),
                price: sku.price,
                attributes: sku.attributes,
                low_stock_threshold: sku
                    .low_stock_threshold
                    .unwrap_or(default_low_stock_threshold),
            })
            .collect();
        Product {
            id,
            tenant: tenant.as_str().to_owned(),
            title: self.title,
            description: self.description,
            category: self.category,
            attributes: self.attributes,
            skus,
            created_at_ms,
        }
    }
}

fn check_text(
    field: &'static str,
    value: &str,
    min_chars: usize,
    max_chars: usize,
    errors: &mut Vec<InvalidField>,
) {
    let chars = value.chars().count();
    if chars < min_chars || chars > max_chars {
        errors.push(InvalidField::new(
            field,
            format!("must be {min_chars}..={max_chars} characters"),
        ));
    } else if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        errors.push(InvalidField::new(
            field,
            "must not contain control characters",
        ));
    }
}

fn check_attributes(
    field: &'static str,
    attributes: BTreeMap<String, String>,
    errors: &mut Vec<InvalidField>,
) -> Vec<(String, String)> {
    if attributes.len() > ATTRIBUTES_MAX {
        errors.push(InvalidField::new(
            field,
            format!("at most {ATTRIBUTES_MAX} attributes"),
        ));
    }
    for (key, value) in &attributes {
        check_text(field, key, 1, ATTRIBUTE_KEY_MAX_CHARS, errors);
        check_text(field, value, 0, ATTRIBUTE_VALUE_MAX_CHARS, errors);
    }
    attributes.into_iter().collect()
}

impl NewProduct {
    /// Checks every rule and reports every broken one.
    pub fn validate(self, low_stock_threshold_max: u64) -> Result<ValidProduct, Vec<InvalidField>> {
        let mut errors = Vec::new();
        check_text("title", &self.title, 1, TITLE_MAX_CHARS, &mut errors);
        check_text(
            "description",
            &self.description,
            0,
            DESCRIPTION_MAX_CHARS,
            &mut errors,
        );
        check_text(
            "category",
            &self.category,
            0,
            CATEGORY_MAX_CHARS,
            &mut errors,
        );
        let attributes = check_attributes("attributes", self.attributes, &mut errors);
        if self.skus.is_empty() || self.skus.len() > SKUS_PER_PRODUCT_MAX {
            errors.push(InvalidField::new(
                "skus",
                format!("a product has 1..={SKUS_PER_PRODUCT_MAX} SKUs"),
            ));
        }
        let mut skus = Vec::with_capacity(self.skus.len());
        for sku in self.skus {
            let code = match SkuCode::parse(&sku.code) {
                Ok(code) => code,
                Err(e) => {
                    errors.push(InvalidField::new("skus[].sku", e.reason));
                    continue;
                }
            };
            // A code listed twice is the engine's to refuse (409), like one in use.
            let price = match Money::parse("skus[].price", sku.price_amount, &sku.price_currency) {
                Ok(price) => price,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if sku
                .low_stock_threshold
                .is_some_and(|t| t > low_stock_threshold_max)
            {
                errors.push(InvalidField::new(
                    "skus[].low_stock_threshold",
                    format!("must be at most {low_stock_threshold_max}"),
                ));
            }
            let attributes = check_attributes("skus[].attributes", sku.attributes, &mut errors);
            skus.push(ValidSku {
                code,
                price,
                attributes,
                low_stock_threshold: sku.low_stock_threshold,
            });
        }
        if errors.is_empty() {
            Ok(ValidProduct {
                title: self.title,
                description: self.description,
                category: self.category,
                attributes,
                skus,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(code: &str) -> NewSku {
        NewSku {
            code: code.into(),
            price_amount: 1999,
            price_currency: "USD".into(),
            attributes: BTreeMap::new(),
            low_stock_threshold: None,
        }
    }

    fn product(skus: Vec<NewSku>) -> NewProduct {
        NewProduct {
            title: "Tee".into(),
            description: String::new(),
            category: "apparel".into(),
            attributes: BTreeMap::new(),
            skus,
        }
    }

    #[test]
    fn a_well_formed_product_validates() {
        let valid = product(vec![sku("TEE-S"), sku("TEE-M")])
            .validate(1000)
            .unwrap();
        assert_eq!(valid.skus.len(), 2);
    }

    #[test]
    fn every_broken_rule_is_reported() {
        let mut bad = product(vec![sku("A"), sku("A"), sku("bad code")]);
        bad.title = String::new();
        bad.skus[0].price_currency = "usd".into();
        let errors = bad.validate(1000).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_ref()).collect();
        assert!(fields.contains(&"title"), "{errors:?}");
        assert!(fields.contains(&"skus[].price"), "{errors:?}");
        assert!(fields.contains(&"skus[].sku"), "{errors:?}");
    }

    #[test]
    fn products_without_skus_or_with_negative_prices_are_refused() {
        assert!(product(vec![]).validate(1000).is_err());
        let mut negative = sku("A");
        negative.price_amount = -1;
        assert!(product(vec![negative]).validate(1000).is_err());
    }
}
