//! Products and their SKUs (variants) as sellers create them: validation
//! rules and the stored form, with the layouts of older formats in `legacy`.

use std::collections::BTreeMap;

use super::ids::{InvalidField, SkuCode, SkuId, TenantKey};

pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 5_000;
pub const CATEGORY_MAX_CHARS: usize = 100;
pub const ATTRIBUTES_MAX: usize = 32;
pub const ATTRIBUTE_KEY_MAX_CHARS: usize = 64;
pub const ATTRIBUTE_VALUE_MAX_CHARS: usize = 256;
pub const SKUS_PER_PRODUCT_MAX: usize = 100;
pub const BRAND_MAX_CHARS: usize = 100;
pub const IMAGES_MAX: usize = 20;
pub const IMAGE_URL_MAX_CHARS: usize = 2_048;
pub const IMAGE_ALT_MAX_CHARS: usize = 250;
/// Option axes per product (e.g. size, colour, material).
pub const OPTION_AXES_MAX: usize = 3;
pub const OPTION_VALUES_MAX: usize = 100;
pub const OPTION_TEXT_MAX_CHARS: usize = 64;
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

/// A variant: one SKU code with its own price and attributes.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Sku {
    pub id: u64,
    pub code: String,
    pub price: Money,
    /// The "was" price shown struck through, in the same currency; above `price`.
    pub compare_at: Option<i64>,
    /// One value per option axis of the product, in the axes' order.
    pub options: Vec<String>,
    pub attributes: Vec<(String, String)>,
    pub low_stock_threshold: u64,
}

impl Sku {
    /// The id of a variant an edit adds, until the catalog assigns one
    /// (assigned ids start at 1).
    pub const UNASSIGNED: u64 = 0;
}

/// Bounds an edit is checked against.
#[derive(Debug, Clone, Copy)]
pub struct EditLimits {
    /// `stock.units_max`: the largest low-stock threshold.
    pub low_stock_threshold_max: u64,
    /// `stock.low_stock_threshold`: a new variant's threshold when it names none.
    pub default_low_stock_threshold: u64,
}

/// Why a variant cannot be removed from the product itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VariantError {
    #[error("the product has no such variant")]
    NoSuchVariant,
    #[error("a product keeps at least one variant; archive it instead")]
    LastVariant,
}

/// Where a product is in its life: sellers prepare a draft, shoppers see an
/// active product, an archived one is kept for history and sells no more.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum ProductStatus {
    Draft,
    Active,
    Archived,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Draft => "draft",
            ProductStatus::Active => "active",
            ProductStatus::Archived => "archived",
        }
    }

    /// The statuses a seller may move a product to from this one: a draft is
    /// published or set aside, an active product archived; an archived one
    /// stays archived (only a rollback brings an earlier status back).
    pub fn next(self) -> &'static [ProductStatus] {
        match self {
            ProductStatus::Draft => &[ProductStatus::Active, ProductStatus::Archived],
            ProductStatus::Active => &[ProductStatus::Archived],
            ProductStatus::Archived => &[],
        }
    }

    /// Whether shoppers see it and its SKUs can be reserved and bought.
    pub fn on_sale(self) -> bool {
        self == ProductStatus::Active
    }
}

/// A status change the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a product cannot move from {} to {}", from.as_str(), to.as_str())]
pub struct StatusError {
    pub from: ProductStatus,
    pub to: ProductStatus,
}

impl StatusError {
    /// The field error a patch answers.
    pub fn field(&self) -> InvalidField {
        let allowed: Vec<&str> = self.from.next().iter().map(|s| s.as_str()).collect();
        InvalidField::new(
            "status",
            if allowed.is_empty() {
                format!("an {} product keeps its status", self.from.as_str())
            } else {
                format!(
                    "a {} product can become {}",
                    self.from.as_str(),
                    allowed.join(" or ")
                )
            },
        )
    }
}

/// A product image: where it is and what it shows.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Image {
    pub url: String,
    pub alt: String,
}

/// An option axis such as size or colour, with the values variants may take.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OptionAxis {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Product {
    pub id: u128,
    pub tenant: String,
    /// 1 when created; every change makes the next version.
    pub version: u64,
    pub status: ProductStatus,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category: String,
    pub attributes: Vec<(String, String)>,
    pub images: Vec<Image>,
    pub options: Vec<OptionAxis>,
    pub skus: Vec<Sku>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Who made this version (an audit actor, e.g. `user:…`); empty for a
    /// product of the old format.
    pub updated_by: String,
}

/// The stored forms of records and snapshots written before products had
/// versions (formats 0 and 1). Their archived layout must never change: old
/// data directories are read through them.
pub mod legacy {
    use super::{Money, Product, ProductStatus, Sku};

    #[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct SkuV1 {
        pub id: u64,
        pub code: String,
        pub price: Money,
        pub attributes: Vec<(String, String)>,
        pub low_stock_threshold: u64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct ProductV1 {
        pub id: u128,
        pub tenant: String,
        pub title: String,
        pub description: String,
        pub category: String,
        pub attributes: Vec<(String, String)>,
        pub skus: Vec<SkuV1>,
        pub created_at_ms: u64,
    }

    impl From<ProductV1> for Product {
        /// A product of the old format was visible and sellable when it was
        /// written: it reads as version 1, active.
        fn from(old: ProductV1) -> Self {
            Product {
                id: old.id,
                tenant: old.tenant,
                version: 1,
                status: ProductStatus::Active,
                title: old.title,
                description: old.description,
                brand: String::new(),
                category: old.category,
                attributes: old.attributes,
                images: Vec::new(),
                options: Vec::new(),
                skus: old
                    .skus
                    .into_iter()
                    .map(|sku| Sku {
                        id: sku.id,
                        code: sku.code,
                        price: sku.price,
                        compare_at: None,
                        options: Vec::new(),
                        attributes: sku.attributes,
                        low_stock_threshold: sku.low_stock_threshold,
                    })
                    .collect(),
                created_at_ms: old.created_at_ms,
                updated_at_ms: old.created_at_ms,
                updated_by: String::new(),
            }
        }
    }
}

/// A SKU as a seller submits it.
#[derive(Debug, Clone)]
pub struct NewSku {
    pub code: String,
    pub price_amount: i64,
    pub price_currency: String,
    pub compare_at: Option<i64>,
    /// One value per option axis of the product, in the axes' order.
    pub options: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub low_stock_threshold: Option<u64>,
}

/// A product as a seller submits it.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// `Draft` (prepared, seen only by its sellers) or `Active`.
    pub status: ProductStatus,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category: String,
    pub attributes: BTreeMap<String, String>,
    pub images: Vec<Image>,
    pub options: Vec<OptionAxis>,
    pub skus: Vec<NewSku>,
}

/// A product that passed validation; SKU ids are assigned when it is stored.
#[derive(Debug, Clone)]
pub struct ValidProduct {
    pub status: ProductStatus,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category: String,
    pub attributes: Vec<(String, String)>,
    pub images: Vec<Image>,
    pub options: Vec<OptionAxis>,
    pub skus: Vec<ValidSku>,
}

#[derive(Debug, Clone)]
pub struct ValidSku {
    pub code: SkuCode,
    pub price: Money,
    pub compare_at: Option<i64>,
    pub options: Vec<String>,
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
        self.build(
            id,
            tenant.as_str().to_owned(),
            sku_ids,
            default_low_stock_threshold,
            created_at_ms,
        )
    }

    fn build(
        self,
        id: u128,
        tenant: String,
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
                compare_at: sku.compare_at,
                options: sku.options,
                attributes: sku.attributes,
                low_stock_threshold: sku
                    .low_stock_threshold
                    .unwrap_or(default_low_stock_threshold),
            })
            .collect();
        Product {
            id,
            tenant,
            version: 1,
            status: self.status,
            title: self.title,
            description: self.description,
            brand: self.brand,
            category: self.category,
            attributes: self.attributes,
            images: self.images,
            options: self.options,
            skus,
            created_at_ms,
            updated_at_ms: created_at_ms,
            updated_by: String::new(),
        }
    }
}

/// A seller's change to a product: `None` keeps a field, `Some` replaces it
/// (maps and lists whole). Variants are changed by code; adding or removing
/// one is not a patch (`with_variant`, `without_variant`, `replaced`).
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    /// Moves along the lifecycle (`ProductStatus::next`).
    pub status: Option<ProductStatus>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub brand: Option<String>,
    pub category: Option<String>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub images: Option<Vec<Image>>,
    pub options: Option<Vec<OptionAxis>>,
    pub skus: Vec<SkuPatch>,
}

#[derive(Debug, Clone, Default)]
pub struct SkuPatch {
    pub code: String,
    /// Amount and currency.
    pub price: Option<(i64, String)>,
    /// `Some(None)` clears the compare-at price.
    pub compare_at: Option<Option<i64>>,
    pub options: Option<Vec<String>>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub low_stock_threshold: Option<u64>,
}

impl Product {
    /// The product as a seller would submit it, to change and validate again.
    fn as_new(&self) -> NewProduct {
        NewProduct {
            status: self.status,
            title: self.title.clone(),
            description: self.description.clone(),
            brand: self.brand.clone(),
            category: self.category.clone(),
            attributes: self.attributes.iter().cloned().collect(),
            images: self.images.clone(),
            options: self.options.clone(),
            skus: self
                .skus
                .iter()
                .map(|sku| NewSku {
                    code: sku.code.clone(),
                    price_amount: sku.price.amount,
                    price_currency: sku.price.currency.clone(),
                    compare_at: sku.compare_at,
                    options: sku.options.clone(),
                    attributes: sku.attributes.iter().cloned().collect(),
                    low_stock_threshold: Some(sku.low_stock_threshold),
                })
                .collect(),
        }
    }

    /// Whether a seller may move this product to `status` (staying put is
    /// allowed: it changes nothing).
    pub fn moved_to(&self, status: ProductStatus) -> Result<(), StatusError> {
        if status == self.status || self.status.next().contains(&status) {
            Ok(())
        } else {
            Err(StatusError {
                from: self.status,
                to: status,
            })
        }
    }

    /// The next version in `status`, by `by` at `at_ms`; `Ok(None)` when it
    /// is in that status already.
    pub fn with_status(
        &self,
        status: ProductStatus,
        by: &str,
        at_ms: u64,
    ) -> Result<Option<Product>, StatusError> {
        self.moved_to(status)?;
        if status == self.status {
            return Ok(None);
        }
        let mut next = self.clone();
        next.status = status;
        next.version = self.version + 1;
        next.updated_at_ms = at_ms;
        next.updated_by = by.to_owned();
        Ok(Some(next))
    }

    /// The next version with `patch` applied, checked by every rule a new
    /// product meets; `Ok(None)` when the patch changes nothing.
    pub fn patched(
        &self,
        patch: ProductPatch,
        limits: EditLimits,
        by: &str,
        at_ms: u64,
    ) -> Result<Option<Product>, Vec<InvalidField>> {
        let mut draft = self.as_new();
        let mut errors = Vec::new();
        if let Some(status) = patch.status {
            match self.moved_to(status) {
                Ok(()) => draft.status = status,
                Err(error) => errors.push(error.field()),
            }
        }
        if let Some(title) = patch.title {
            draft.title = title;
        }
        if let Some(description) = patch.description {
            draft.description = description;
        }
        if let Some(brand) = patch.brand {
            draft.brand = brand;
        }
        if let Some(category) = patch.category {
            draft.category = category;
        }
        if let Some(attributes) = patch.attributes {
            draft.attributes = attributes;
        }
        if let Some(images) = patch.images {
            draft.images = images;
        }
        if let Some(options) = patch.options {
            draft.options = options;
        }
        let mut patched_codes = std::collections::HashSet::new();
        for change in patch.skus {
            if !patched_codes.insert(change.code.clone()) {
                errors.push(InvalidField::new(
                    "skus[].sku",
                    format!("{} is listed twice", change.code),
                ));
                continue;
            }
            let Some(sku) = draft.skus.iter_mut().find(|s| s.code == change.code) else {
                errors.push(InvalidField::new(
                    "skus[].sku",
                    format!(
                        "the product has no variant {}; variants are added with POST /v1/products/{{id}}/variants",
                        change.code
                    ),
                ));
                continue;
            };
            if let Some((amount, currency)) = change.price {
                sku.price_amount = amount;
                sku.price_currency = currency;
            }
            if let Some(compare_at) = change.compare_at {
                sku.compare_at = compare_at;
            }
            if let Some(options) = change.options {
                sku.options = options;
            }
            if let Some(attributes) = change.attributes {
                sku.attributes = attributes;
            }
            if let Some(threshold) = change.low_stock_threshold {
                sku.low_stock_threshold = Some(threshold);
            }
        }
        self.next_version(draft, errors, limits, by, at_ms)
    }

    /// The next version as `replacement` describes it whole (`PUT`):
    /// variants are matched by code, so a listed code the product has keeps
    /// its id, a new one is added (`Sku::UNASSIGNED`) and one left out is
    /// removed; `None` for the status keeps it, and a SKU without a
    /// threshold keeps its own. `Ok(None)` when nothing changes.
    pub fn replaced(
        &self,
        mut replacement: NewProduct,
        status: Option<ProductStatus>,
        limits: EditLimits,
        by: &str,
        at_ms: u64,
    ) -> Result<Option<Product>, Vec<InvalidField>> {
        let mut errors = Vec::new();
        replacement.status = self.status;
        if let Some(status) = status {
            match self.moved_to(status) {
                Ok(()) => replacement.status = status,
                Err(error) => errors.push(error.field()),
            }
        }
        for sku in &mut replacement.skus {
            if sku.low_stock_threshold.is_none() {
                sku.low_stock_threshold = self
                    .skus
                    .iter()
                    .find(|s| s.code == sku.code)
                    .map(|s| s.low_stock_threshold);
            }
        }
        self.next_version(replacement, errors, limits, by, at_ms)
    }

    /// The next version with `variant` added after the others (it is
    /// `Sku::UNASSIGNED` until the catalog gives it an id), checked by every
    /// rule a new product meets. A code the product has already is an
    /// error here; one another product uses is the catalog's to refuse.
    pub fn with_variant(
        &self,
        variant: NewSku,
        limits: EditLimits,
        by: &str,
        at_ms: u64,
    ) -> Result<Product, Vec<InvalidField>> {
        let mut errors = Vec::new();
        if self.skus.iter().any(|s| s.code == variant.code) {
            errors.push(InvalidField::new(
                "sku",
                format!("the product has a variant {} already", variant.code),
            ));
        }
        let mut draft = self.as_new();
        draft.skus.push(variant);
        match self.next_version(draft, errors, limits, by, at_ms)? {
            Some(next) => Ok(next),
            None => unreachable!("a product with one more variant differs"),
        }
    }

    /// The next version without the variant `code`; the catalog decides
    /// whether its stock allows it to go.
    pub fn without_variant(
        &self,
        code: &str,
        by: &str,
        at_ms: u64,
    ) -> Result<Product, VariantError> {
        let index = self
            .skus
            .iter()
            .position(|s| s.code == code)
            .ok_or(VariantError::NoSuchVariant)?;
        if self.skus.len() == 1 {
            return Err(VariantError::LastVariant);
        }
        let mut next = self.clone();
        next.skus.remove(index);
        next.version = self.version + 1;
        next.updated_at_ms = at_ms;
        next.updated_by = by.to_owned();
        Ok(next)
    }

    /// Validates `draft` (with `errors` found already) as the next version:
    /// each SKU keeps the id of the variant with its code, a new code is
    /// `Sku::UNASSIGNED`; `Ok(None)` when it equals this version.
    fn next_version(
        &self,
        draft: NewProduct,
        mut errors: Vec<InvalidField>,
        limits: EditLimits,
        by: &str,
        at_ms: u64,
    ) -> Result<Option<Product>, Vec<InvalidField>> {
        let valid = match draft.validate(limits.low_stock_threshold_max) {
            Ok(valid) if errors.is_empty() => valid,
            Ok(_) => return Err(errors),
            Err(mut more) => {
                errors.append(&mut more);
                return Err(errors);
            }
        };
        let ids: Vec<SkuId> = valid
            .skus
            .iter()
            .map(|sku| {
                let id = self.skus.iter().find(|s| s.code == sku.code.as_str());
                SkuId(id.map_or(Sku::UNASSIGNED, |s| s.id))
            })
            .collect();
        let mut next = valid.build(
            self.id,
            self.tenant.clone(),
            &ids,
            limits.default_low_stock_threshold,
            self.created_at_ms,
        );
        next.version = self.version;
        next.updated_at_ms = self.updated_at_ms;
        next.updated_by = self.updated_by.clone();
        if next == *self {
            return Ok(None);
        }
        next.version = self.version + 1;
        next.updated_at_ms = at_ms;
        next.updated_by = by.to_owned();
        Ok(Some(next))
    }

    /// The fields that differ from `before`, by name (`skus[CODE].price`
    /// for a variant's); what the audit and a version's diff list.
    pub fn changed_fields(&self, before: &Product) -> Vec<String> {
        super::product_version::diff(before, self)
            .into_iter()
            .map(|change| change.field)
            .collect()
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

/// An absolute http(s) URL: the scheme, a host of letters, digits, dots and
/// hyphens (starting with a letter or digit), an optional port, then an
/// optional path, query or fragment without spaces or control characters.
/// The same rule is the OpenAPI pattern `IMAGE_URL_PATTERN`.
pub fn is_image_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = host
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok
        && port_ok
        && !tail
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\u{feff}')
}

/// `is_image_url` as an ECMA regular expression, for the OpenAPI schema.
pub const IMAGE_URL_PATTERN: &str =
    "^https?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?([/?#][^\\s\\u0000-\\u001f\\u007f-\\u009f]*)?$";

fn check_image_url(url: &str, errors: &mut Vec<InvalidField>) {
    let field = "images[].url";
    if url.chars().count() > IMAGE_URL_MAX_CHARS {
        errors.push(InvalidField::new(
            field,
            format!("must be at most {IMAGE_URL_MAX_CHARS} characters"),
        ));
    } else if !is_image_url(url) {
        errors.push(InvalidField::new(
            field,
            "must be an absolute http or https URL with a host, without spaces",
        ));
    }
}

fn check_images(images: &[Image], errors: &mut Vec<InvalidField>) {
    if images.len() > IMAGES_MAX {
        errors.push(InvalidField::new(
            "images",
            format!("at most {IMAGES_MAX} images"),
        ));
    }
    for image in images {
        check_image_url(&image.url, errors);
        check_text("images[].alt", &image.alt, 0, IMAGE_ALT_MAX_CHARS, errors);
    }
}

/// Axes with unique names (ignoring case), each with 1.. unique values.
fn check_options(axes: &[OptionAxis], errors: &mut Vec<InvalidField>) {
    if axes.len() > OPTION_AXES_MAX {
        errors.push(InvalidField::new(
            "options",
            format!("at most {OPTION_AXES_MAX} option axes"),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for axis in axes {
        check_text(
            "options[].name",
            &axis.name,
            1,
            OPTION_TEXT_MAX_CHARS,
            errors,
        );
        if !names.insert(axis.name.to_lowercase()) {
            errors.push(InvalidField::new(
                "options[].name",
                format!("the axis {:?} is listed twice", axis.name),
            ));
        }
        if axis.values.is_empty() || axis.values.len() > OPTION_VALUES_MAX {
            errors.push(InvalidField::new(
                "options[].values",
                format!("an axis has 1..={OPTION_VALUES_MAX} values"),
            ));
        }
        let mut values = std::collections::HashSet::new();
        for value in &axis.values {
            check_text("options[].values", value, 1, OPTION_TEXT_MAX_CHARS, errors);
            if !values.insert(value.as_str()) {
                errors.push(InvalidField::new(
                    "options[].values",
                    format!("the value {value:?} of {:?} is listed twice", axis.name),
                ));
            }
        }
    }
}

/// Each variant names one listed value per axis, and no two variants the same
/// combination.
fn check_variant_options(axes: &[OptionAxis], skus: &[NewSku], errors: &mut Vec<InvalidField>) {
    let mut seen = std::collections::HashSet::new();
    for sku in skus {
        if sku.options.len() != axes.len() {
            errors.push(InvalidField::new(
                "skus[].options",
                format!(
                    "{} gives {} option values; the product has {} axes",
                    sku.code,
                    sku.options.len(),
                    axes.len()
                ),
            ));
            continue;
        }
        for (axis, value) in axes.iter().zip(&sku.options) {
            if !axis.values.contains(value) {
                errors.push(InvalidField::new(
                    "skus[].options",
                    format!("{value:?} is not a value of {:?}", axis.name),
                ));
            }
        }
        if !axes.is_empty() && !seen.insert(sku.options.clone()) {
            errors.push(InvalidField::new(
                "skus[].options",
                format!("two variants are {:?}", sku.options),
            ));
        }
    }
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
        check_text("brand", &self.brand, 0, BRAND_MAX_CHARS, &mut errors);
        check_images(&self.images, &mut errors);
        check_options(&self.options, &mut errors);
        check_variant_options(&self.options, &self.skus, &mut errors);
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
            if let Some(was) = sku.compare_at {
                if was <= price.amount || was > PRICE_MAX_MINOR {
                    errors.push(InvalidField::new(
                        "skus[].compare_at",
                        format!(
                            "must be above the price and at most {PRICE_MAX_MINOR} minor units"
                        ),
                    ));
                }
            }
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
                compare_at: sku.compare_at,
                options: sku.options,
                attributes,
                low_stock_threshold: sku.low_stock_threshold,
            });
        }
        if errors.is_empty() {
            Ok(ValidProduct {
                status: self.status,
                title: self.title,
                description: self.description,
                brand: self.brand,
                category: self.category,
                attributes,
                images: self.images,
                options: self.options,
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
            compare_at: None,
            options: Vec::new(),
            attributes: BTreeMap::new(),
            low_stock_threshold: None,
        }
    }

    fn product(skus: Vec<NewSku>) -> NewProduct {
        NewProduct {
            status: ProductStatus::Active,
            title: "Tee".into(),
            description: String::new(),
            brand: String::new(),
            category: "apparel".into(),
            attributes: BTreeMap::new(),
            images: Vec::new(),
            options: Vec::new(),
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

    fn fields_of(product: NewProduct) -> Vec<String> {
        product
            .validate(1000)
            .unwrap_err()
            .iter()
            .map(|e| e.field.to_string())
            .collect()
    }

    #[test]
    fn images_need_absolute_http_urls_and_are_bounded() {
        let mut p = product(vec![sku("A")]);
        p.images = vec![Image {
            url: "https://cdn.example/a.jpg".into(),
            alt: "front".into(),
        }];
        assert!(p.clone().validate(1000).is_ok());
        for bad in [
            "ftp://x/a.jpg",
            "/a.jpg",
            "https://",
            "https://x/a b.jpg",
            "",
        ] {
            let mut q = p.clone();
            q.images[0].url = bad.into();
            assert_eq!(fields_of(q), vec!["images[].url"], "{bad:?}");
        }
        p.images = vec![p.images[0].clone(); IMAGES_MAX + 1];
        assert_eq!(fields_of(p), vec!["images"]);
    }

    #[test]
    fn variants_name_one_listed_value_per_axis_and_no_combination_twice() {
        let axes = vec![
            OptionAxis {
                name: "size".into(),
                values: vec!["S".into(), "M".into()],
            },
            OptionAxis {
                name: "colour".into(),
                values: vec!["red".into()],
            },
        ];
        let variant = |code: &str, options: &[&str]| NewSku {
            options: options.iter().map(|o| o.to_string()).collect(),
            ..sku(code)
        };
        let mut p = product(vec![
            variant("A", &["S", "red"]),
            variant("B", &["M", "red"]),
        ]);
        p.options = axes.clone();
        assert!(p.clone().validate(1000).is_ok());
        p.skus[1].options = vec!["S".into(), "red".into()];
        assert_eq!(
            fields_of(p.clone()),
            vec!["skus[].options"],
            "same combination"
        );
        p.skus[1].options = vec!["XL".into(), "red".into()];
        assert_eq!(
            fields_of(p.clone()),
            vec!["skus[].options"],
            "unlisted value"
        );
        p.skus[1].options = vec!["M".into()];
        assert_eq!(
            fields_of(p.clone()),
            vec!["skus[].options"],
            "too few values"
        );
        p.options.push(OptionAxis {
            name: "SIZE".into(),
            values: vec![],
        });
        let fields = fields_of(p);
        assert!(fields.contains(&"options[].name".to_string()), "{fields:?}");
        assert!(
            fields.contains(&"options[].values".to_string()),
            "{fields:?}"
        );
    }

    #[test]
    fn a_compare_at_price_must_be_above_the_price() {
        let mut p = product(vec![NewSku {
            compare_at: Some(1999),
            ..sku("A")
        }]);
        assert_eq!(fields_of(p.clone()), vec!["skus[].compare_at"]);
        p.skus[0].compare_at = Some(2999);
        assert_eq!(p.validate(1000).unwrap().skus[0].compare_at, Some(2999));
    }

    #[test]
    fn a_status_moves_only_forward_along_the_lifecycle() {
        use ProductStatus::{Active, Archived, Draft};
        let mut draft = product(vec![sku("A")]);
        draft.status = Draft;
        let draft = draft.validate(1000).unwrap().into_product(
            1,
            &TenantKey::parse("t").unwrap(),
            &[SkuId(1)],
            5,
            10,
        );
        assert_eq!(draft.status, Draft);
        let active = draft.with_status(Active, "user:1", 20).unwrap().unwrap();
        assert_eq!((active.version, active.updated_at_ms), (2, 20));
        assert_eq!(active.with_status(Active, "user:1", 30), Ok(None));
        let refused = active.with_status(Draft, "user:1", 30).unwrap_err();
        assert_eq!(refused.field().field, "status");
        let archived = active.with_status(Archived, "user:1", 30).unwrap().unwrap();
        for to in [Draft, Active] {
            assert!(archived.moved_to(to).is_err(), "{to:?}");
        }
        // A patch moves the status by the same rules.
        let patch = |status| ProductPatch {
            status: Some(status),
            ..ProductPatch::default()
        };
        assert_eq!(
            draft
                .patched(patch(Active), LIMITS, "user:1", 40)
                .unwrap()
                .unwrap()
                .status,
            Active
        );
        let errors = archived
            .patched(patch(Active), LIMITS, "user:1", 40)
            .unwrap_err();
        assert_eq!(errors[0].field, "status");
    }

    const LIMITS: EditLimits = EditLimits {
        low_stock_threshold_max: 1000,
        default_low_stock_threshold: 5,
    };

    fn stored(skus: Vec<NewSku>) -> Product {
        let ids: Vec<SkuId> = (1..=skus.len() as u64).map(SkuId).collect();
        product(skus).validate(1000).unwrap().into_product(
            1,
            &TenantKey::parse("t").unwrap(),
            &ids,
            5,
            10,
        )
    }

    #[test]
    fn a_variant_added_is_unassigned_and_meets_the_product_rules() {
        let p = stored(vec![sku("A")]);
        let next = p
            .with_variant(sku("B"), LIMITS, "user:1", 20)
            .expect("a second variant");
        assert_eq!(next.version, 2);
        let ids: Vec<u64> = next.skus.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![1, Sku::UNASSIGNED]);
        assert_eq!(next.skus[1].low_stock_threshold, 5, "the default threshold");
        let errors = p.with_variant(sku("A"), LIMITS, "user:1", 20).unwrap_err();
        assert_eq!(errors[0].field, "sku", "a code the product has");
        let bad = NewSku {
            price_amount: -1,
            ..sku("C")
        };
        let errors = p.with_variant(bad, LIMITS, "user:1", 20).unwrap_err();
        assert_eq!(errors[0].field, "skus[].price");
        let mut full = p.clone();
        full.skus = (0..SKUS_PER_PRODUCT_MAX as u64)
            .map(|i| Sku {
                id: i + 1,
                code: format!("S{i}"),
                ..p.skus[0].clone()
            })
            .collect();
        let errors = full
            .with_variant(sku("X"), LIMITS, "user:1", 20)
            .unwrap_err();
        assert_eq!(errors[0].field, "skus", "at most {SKUS_PER_PRODUCT_MAX}");
    }

    #[test]
    fn a_variant_goes_unless_it_is_the_last_one() {
        let p = stored(vec![sku("A"), sku("B")]);
        let next = p.without_variant("A", "user:1", 20).unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(next.skus.len(), 1);
        assert_eq!((next.skus[0].id, next.skus[0].code.as_str()), (2, "B"));
        assert_eq!(
            p.without_variant("Z", "user:1", 20),
            Err(VariantError::NoSuchVariant)
        );
        assert_eq!(
            next.without_variant("B", "user:1", 30),
            Err(VariantError::LastVariant)
        );
    }

    #[test]
    fn a_replacement_matches_variants_by_code() {
        let p = stored(vec![
            NewSku {
                low_stock_threshold: Some(9),
                ..sku("A")
            },
            sku("B"),
        ]);
        let mut whole = product(vec![
            NewSku {
                price_amount: 2500,
                ..sku("A")
            },
            sku("C"),
        ]);
        whole.title = "Tee, new".into();
        let next = p
            .replaced(whole.clone(), None, LIMITS, "user:1", 20)
            .unwrap()
            .expect("a change");
        assert_eq!(next.title, "Tee, new");
        let skus: Vec<(u64, &str, i64, u64)> = next
            .skus
            .iter()
            .map(|s| (s.id, s.code.as_str(), s.price.amount, s.low_stock_threshold))
            .collect();
        assert_eq!(
            skus,
            vec![(1, "A", 2500, 9), (Sku::UNASSIGNED, "C", 1999, 5)],
            "A keeps its id and threshold, B goes, C comes"
        );
        assert_eq!(next.status, p.status, "no status keeps it");
        // The same content again changes nothing.
        let same = product(vec![
            NewSku {
                low_stock_threshold: Some(9),
                ..sku("A")
            },
            sku("B"),
        ]);
        assert_eq!(p.replaced(same, None, LIMITS, "user:1", 20), Ok(None));
        let errors = p
            .replaced(whole, Some(ProductStatus::Draft), LIMITS, "user:1", 20)
            .unwrap_err();
        assert_eq!(errors[0].field, "status", "active cannot become a draft");
    }

    #[test]
    fn an_old_format_product_reads_as_active_version_1() {
        let old = legacy::ProductV1 {
            id: 7,
            tenant: "acme".into(),
            title: "Tee".into(),
            description: "soft".into(),
            category: "apparel".into(),
            attributes: vec![("fit".into(), "slim".into())],
            skus: vec![legacy::SkuV1 {
                id: 3,
                code: "TEE-S".into(),
                price: Money::parse("price", 1999, "USD").unwrap(),
                attributes: vec![],
                low_stock_threshold: 5,
            }],
            created_at_ms: 42,
        };
        let new = Product::from(old);
        assert_eq!((new.version, new.status), (1, ProductStatus::Active));
        assert_eq!((new.created_at_ms, new.updated_at_ms), (42, 42));
        assert_eq!(new.skus[0].code, "TEE-S");
        assert_eq!(new.skus[0].low_stock_threshold, 5);
        assert_eq!(new.attributes, vec![("fit".into(), "slim".into())]);
    }
}
