//! Checkout pricing (FR-19): a store's shipping methods and tax rate turned
//! into what one seller's part of an order costs. Integer minor units only;
//! every rounding is half up and stated where it happens.

use std::collections::HashSet;

use super::identity::{ShippingSettings, TaxSettings};
use super::ids::InvalidField;

/// At most this many shipping methods per store.
pub const METHODS_MAX: usize = 20;
/// The largest price or threshold a method may name (minor units).
pub const AMOUNT_MAX_MINOR: u64 = 1_000_000_000_000;

/// One way a store ships: a price, and optionally an order subtotal at or
/// above which it is free.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ShippingMethod {
    /// What a shopper names at checkout: 1..=32 of `a-z`, `0-9`, `-`, `_`.
    pub code: String,
    pub name: String,
    pub price_minor: u64,
    pub free_over_minor: Option<u64>,
}

/// Checks a store's list of methods; every problem is reported with the
/// index of the method it is in.
pub fn check_methods(methods: &[ShippingMethod]) -> Result<(), Vec<InvalidField>> {
    let mut errors = Vec::new();
    if methods.len() > METHODS_MAX {
        errors.push(InvalidField::new(
            "shipping.methods",
            format!("may list at most {METHODS_MAX} methods"),
        ));
    }
    let mut codes = HashSet::new();
    for (i, method) in methods.iter().enumerate() {
        let at = |field: &str| format!("shipping.methods[{i}].{field}");
        let code_ok = (1..=32).contains(&method.code.len())
            && method
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !code_ok {
            errors.push(InvalidField::new(
                at("code"),
                "must be 1..=32 of a-z, 0-9, '-' and '_'",
            ));
        } else if !codes.insert(method.code.as_str()) {
            errors.push(InvalidField::new(
                at("code"),
                format!("{} is listed twice", method.code),
            ));
        }
        if let Err(mut error) = super::ids::check_line("name", &method.name, 80) {
            error.field = at("name").into();
            errors.push(error);
        }
        if method.price_minor > AMOUNT_MAX_MINOR {
            errors.push(InvalidField::new(
                at("price_minor"),
                format!("must be 0..={AMOUNT_MAX_MINOR} minor units"),
            ));
        }
        if method.free_over_minor.is_some_and(|a| a > AMOUNT_MAX_MINOR) {
            errors.push(InvalidField::new(
                at("free_over_minor"),
                format!("must be 0..={AMOUNT_MAX_MINOR} minor units"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What one seller's part of an order costs, fixed when the order is made
/// (later changes to the store's settings do not reprice it).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SellerCharges {
    /// The lines' prices times quantities.
    pub subtotal_minor: i64,
    /// The method chosen (none when the store lists none: shipping is free).
    pub shipping_method: Option<String>,
    pub shipping_minor: i64,
    pub tax_rate_bp: u32,
    pub tax_minor: i64,
    /// Whether `tax_minor` is already inside the prices and shipping
    /// (`prices_include_tax`) rather than added on top.
    pub tax_included: bool,
}

impl SellerCharges {
    /// What the buyer pays this seller: subtotal and shipping, plus the tax
    /// when it is not included in them.
    pub fn total_minor(&self) -> i64 {
        let added_tax = if self.tax_included { 0 } else { self.tax_minor };
        self.subtotal_minor + self.shipping_minor + added_tax
    }

    /// Charges of an order made before pricing existed: its lines only.
    pub fn lines_only(subtotal_minor: i64) -> Self {
        Self {
            subtotal_minor,
            shipping_method: None,
            shipping_minor: 0,
            tax_rate_bp: 0,
            tax_minor: 0,
            tax_included: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// The shopper named a method the store does not list.
    #[error("the store has no shipping method {chosen:?}")]
    UnknownMethod {
        chosen: String,
        available: Vec<String>,
    },
}

/// Prices one seller's part of an order. `chosen` names one of the store's
/// methods; unnamed, the store's first method is used (it is the store's
/// default), and a store with no methods ships free. A method is free when
/// the subtotal reaches its own `free_over_minor`, or else the store-wide
/// `free_shipping_over_minor`. Tax is the store's `default_rate_bp` of the
/// subtotal plus shipping, rounded half up: added on top, or when
/// `prices_include_tax` the part of that amount that is tax.
pub fn price(
    subtotal_minor: i64,
    shipping: &ShippingSettings,
    tax: &TaxSettings,
    chosen: Option<&str>,
) -> Result<SellerCharges, PricingError> {
    let method = match chosen {
        Some(code) => Some(
            shipping
                .methods
                .iter()
                .find(|m| m.code == code)
                .ok_or_else(|| PricingError::UnknownMethod {
                    chosen: code.to_owned(),
                    available: shipping.methods.iter().map(|m| m.code.clone()).collect(),
                })?,
        ),
        None => shipping.methods.first(),
    };
    let shipping_minor = match method {
        None => 0,
        Some(m) => {
            let free_over = m.free_over_minor.or(shipping.free_shipping_over_minor);
            let free = free_over.is_some_and(|over| subtotal_minor >= over as i64);
            if free {
                0
            } else {
                m.price_minor as i64
            }
        }
    };
    let rate = i128::from(tax.default_rate_bp);
    let base = i128::from(subtotal_minor + shipping_minor);
    let tax_minor = if tax.prices_include_tax {
        half_up(base * rate, 10_000 + rate)
    } else {
        half_up(base * rate, 10_000)
    };
    Ok(SellerCharges {
        subtotal_minor,
        shipping_method: method.map(|m| m.code.clone()),
        shipping_minor,
        tax_rate_bp: tax.default_rate_bp,
        tax_minor: tax_minor as i64,
        tax_included: tax.prices_include_tax,
    })
}

/// `n / d` rounded half up, for `n >= 0` and `d > 0`.
fn half_up(n: i128, d: i128) -> i128 {
    (2 * n + d) / (2 * d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(code: &str, price: u64, free_over: Option<u64>) -> ShippingMethod {
        ShippingMethod {
            code: code.into(),
            name: format!("{code} shipping"),
            price_minor: price,
            free_over_minor: free_over,
        }
    }

    fn store(methods: Vec<ShippingMethod>, free_over: Option<u64>) -> ShippingSettings {
        ShippingSettings {
            methods,
            free_shipping_over_minor: free_over,
            ..ShippingSettings::default()
        }
    }

    fn tax(rate_bp: u32, included: bool) -> TaxSettings {
        TaxSettings {
            prices_include_tax: included,
            default_rate_bp: rate_bp,
            tax_id: None,
        }
    }

    #[test]
    fn the_chosen_method_or_the_first_is_charged_and_tax_is_added_on_top() {
        let shipping = store(
            vec![
                method("standard", 500, None),
                method("express", 1_500, None),
            ],
            None,
        );
        let standard = price(10_000, &shipping, &tax(2_000, false), None).unwrap();
        assert_eq!(standard.shipping_method.as_deref(), Some("standard"));
        assert_eq!((standard.shipping_minor, standard.tax_minor), (500, 2_100));
        assert_eq!(standard.total_minor(), 12_600);
        let express = price(10_000, &shipping, &tax(2_000, false), Some("express")).unwrap();
        assert_eq!((express.shipping_minor, express.tax_minor), (1_500, 2_300));
        assert_eq!(express.total_minor(), 13_800);
        assert_eq!(
            price(10_000, &shipping, &tax(0, false), Some("pigeon")),
            Err(PricingError::UnknownMethod {
                chosen: "pigeon".into(),
                available: vec!["standard".into(), "express".into()],
            })
        );
    }

    #[test]
    fn included_tax_is_the_part_of_the_amount_that_is_tax() {
        let shipping = store(vec![method("standard", 1_000, None)], None);
        let charges = price(11_000, &shipping, &tax(2_000, true), None).unwrap();
        // 12,000 gross at 20% holds 2,000 of tax; the buyer pays 12,000.
        assert_eq!(charges.tax_minor, 2_000);
        assert!(charges.tax_included);
        assert_eq!(charges.total_minor(), 12_000);
    }

    #[test]
    fn rounding_is_half_up() {
        let none = store(Vec::new(), None);
        // 7.5% of 10 is 0.75 → 1; of 6 is 0.45 → 0; of 20 is 1.5 → 2.
        assert_eq!(
            price(10, &none, &tax(750, false), None).unwrap().tax_minor,
            1
        );
        assert_eq!(
            price(6, &none, &tax(750, false), None).unwrap().tax_minor,
            0
        );
        assert_eq!(
            price(20, &none, &tax(750, false), None).unwrap().tax_minor,
            2
        );
    }

    #[test]
    fn shipping_is_free_over_the_methods_threshold_or_else_the_stores() {
        let shipping = store(
            vec![
                method("standard", 500, None),
                method("express", 1_500, Some(20_000)),
            ],
            Some(5_000),
        );
        let t = tax(0, false);
        assert_eq!(
            price(4_999, &shipping, &t, None).unwrap().shipping_minor,
            500
        );
        assert_eq!(price(5_000, &shipping, &t, None).unwrap().shipping_minor, 0);
        let express = |subtotal| {
            price(subtotal, &shipping, &t, Some("express"))
                .unwrap()
                .shipping_minor
        };
        assert_eq!(express(5_000), 1_500, "its own threshold rules");
        assert_eq!(express(20_000), 0);
        let free = price(3_000, &store(Vec::new(), None), &t, None).unwrap();
        assert_eq!((free.shipping_method, free.shipping_minor), (None, 0));
    }

    #[test]
    fn a_stores_methods_are_checked_together() {
        assert_eq!(check_methods(&[method("standard", 500, None)]), Ok(()));
        let bad = vec![
            method("Standard", 500, None),
            method("ok", AMOUNT_MAX_MINOR + 1, Some(AMOUNT_MAX_MINOR + 1)),
            method("ok", 1, None),
            ShippingMethod {
                name: " ".into(),
                ..method("blank", 1, None)
            },
        ];
        let errors = check_methods(&bad).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_ref()).collect();
        assert_eq!(
            fields,
            [
                "shipping.methods[0].code",
                "shipping.methods[1].price_minor",
                "shipping.methods[1].free_over_minor",
                "shipping.methods[2].code",
                "shipping.methods[3].name",
            ]
        );
        let many: Vec<_> = (0..=METHODS_MAX)
            .map(|i| method(&format!("m{i}"), 1, None))
            .collect();
        assert_eq!(
            check_methods(&many).unwrap_err()[0].field,
            "shipping.methods"
        );
    }
}
