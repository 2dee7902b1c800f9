//! Browsing the catalog: the question a shopper or seller asks (filters,
//! order, page), its page cursor, and which products answer it. The index
//! that answers it fast is `services::listings`; who may see what is
//! `policy`.
//!
//! A product's *list price* is its lowest variant price: the "from" price a
//! listing shows. The price filters and the price order use it, in minor
//! units (pass `currency` to compare like with like). Titles are ordered by
//! their first `TITLE_KEY_MAX_BYTES` bytes in lower case, then by id.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::category::CategoryId;
use super::product::{Product, ProductStatus, PRICE_MAX_MINOR};
use super::{InvalidField, SkuId, TenantId};

/// Bytes of a lower-cased title that order it.
pub const TITLE_KEY_MAX_BYTES: usize = 48;
/// `attr.NAME=VALUE` filters in one question at most.
pub const ATTRIBUTE_FILTERS_MAX: usize = 8;
/// Products in a page: the default and the largest.
pub const PAGE_DEFAULT: usize = 50;
pub const PAGE_MAX: usize = 100;

/// The orders a page can come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowseSort {
    /// Most recently created first.
    Newest,
    /// Lowest list price first.
    Price,
    /// Highest list price first.
    PriceDesc,
    /// By title, A to Z.
    Title,
}

impl BrowseSort {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        match raw {
            "newest" => Ok(Self::Newest),
            "price" => Ok(Self::Price),
            "-price" => Ok(Self::PriceDesc),
            "title" => Ok(Self::Title),
            "rating" => Err(InvalidField::new(
                "sort",
                "products have no ratings yet: sorting by rating arrives with reviews",
            )),
            _ => Err(InvalidField::new(
                "sort",
                "must be one of newest, price, -price, title",
            )),
        }
    }

    fn tag(self) -> char {
        match self {
            Self::Newest => 'n',
            Self::Price => 'p',
            Self::PriceDesc => 'q',
            Self::Title => 't',
        }
    }
}

/// A product's place in one order: compared as the order reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Newest { id: u128 },
    Price { price: i64, id: u128 },
    Title { key: Box<str>, id: u128 },
}

impl Place {
    /// Where `product` stands in `sort`.
    pub fn of(product: &Product, sort: BrowseSort) -> Self {
        match sort {
            BrowseSort::Newest => Self::Newest { id: product.id },
            BrowseSort::Price | BrowseSort::PriceDesc => Self::Price {
                price: list_price(product),
                id: product.id,
            },
            BrowseSort::Title => Self::Title {
                key: title_key(&product.title),
                id: product.id,
            },
        }
    }
}

/// The lowest variant price of a product, in minor units (0 without any).
pub fn list_price(product: &Product) -> i64 {
    product
        .skus
        .iter()
        .map(|s| s.price.amount)
        .min()
        .unwrap_or(0)
}

/// The currency of a product's list price.
pub fn list_currency(product: &Product) -> &str {
    product
        .skus
        .iter()
        .min_by_key(|s| s.price.amount)
        .map_or("", |s| s.price.currency.as_str())
}

/// What orders a title: its lower case, cut at a character boundary.
pub fn title_key(title: &str) -> Box<str> {
    let lower = title.to_lowercase();
    let mut end = lower.len().min(TITLE_KEY_MAX_BYTES);
    while !lower.is_char_boundary(end) {
        end -= 1;
    }
    lower[..end].into()
}

/// Where the next page starts: after the last product of the previous page
/// (or the last one looked at), in the order it was made for. Products
/// added meanwhile take their own place, so no page repeats or skips a
/// product that was there before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub sort: BrowseSort,
    pub after: Place,
}

impl Cursor {
    /// `n.ID`, `p.PRICE.ID` (or `q.` for the descending order) or
    /// `t.ID.KEY`; ids and title keys in lower-case hex.
    pub fn encode(&self) -> String {
        let tag = self.sort.tag();
        match &self.after {
            Place::Newest { id } => format!("{tag}.{id:032x}"),
            Place::Price { price, id } => format!("{tag}.{price}.{id:032x}"),
            Place::Title { key, id } => {
                let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
                format!("{tag}.{id:032x}.{hex}")
            }
        }
    }

    /// The cursor a previous page of the same order gave.
    pub fn decode(raw: &str, sort: BrowseSort) -> Result<Self, InvalidField> {
        let invalid = || InvalidField::new("cursor", "must be a next_cursor of the same sort");
        let mut parts = raw.split('.');
        let tag = parts.next().ok_or_else(invalid)?;
        if tag.len() != 1 || !tag.starts_with(sort.tag()) {
            return Err(invalid());
        }
        let id = |text: Option<&str>| {
            text.filter(|t| t.len() == 32)
                .and_then(|t| u128::from_str_radix(t, 16).ok())
                .ok_or_else(invalid)
        };
        let after = match sort {
            BrowseSort::Newest => Place::Newest {
                id: id(parts.next())?,
            },
            BrowseSort::Price | BrowseSort::PriceDesc => {
                let price = parts
                    .next()
                    .filter(|t| {
                        !t.is_empty() && t.len() <= 13 && t.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|t| t.parse::<i64>().ok())
                    .filter(|p| *p <= PRICE_MAX_MINOR)
                    .ok_or_else(invalid)?;
                Place::Price {
                    price,
                    id: id(parts.next())?,
                }
            }
            BrowseSort::Title => {
                let id = id(parts.next())?;
                let hex = parts.next().ok_or_else(invalid)?;
                if hex.len() % 2 != 0 || hex.len() > TITLE_KEY_MAX_BYTES * 2 {
                    return Err(invalid());
                }
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| invalid())?;
                let key = String::from_utf8(bytes).map_err(|_| invalid())?;
                Place::Title {
                    key: key.into(),
                    id,
                }
            }
        };
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Self { sort, after })
    }
}

/// Which statuses a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Whatever the caller may see: active products, and every product of
    /// the stores the caller sells for.
    Visible,
    /// Only this status (of what the caller may see).
    Only(ProductStatus),
}

/// The filters browsing and search share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filters {
    /// A category and its descendants.
    pub category: Option<CategoryId>,
    pub store: Option<TenantId>,
    /// Inclusive bounds on the list price, in minor units.
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    /// ISO 4217 code of the list price.
    pub currency: Option<String>,
    /// Some variant has units available (`true`) or none has (`false`).
    pub in_stock: Option<bool>,
    /// `attr.NAME=VALUE`: the product or one of its variants has the
    /// attribute (names and values compared without regard to ASCII case).
    pub attributes: Vec<(String, String)>,
}

impl Filters {
    /// Reads `name=value` when it is one of these filters; `Ok(false)` when
    /// it is not. A value out of its bounds is refused with its name.
    pub fn read(&mut self, name: &str, value: &str) -> Result<bool, InvalidField> {
        match name {
            "category" => {
                self.category = Some(
                    number(value, 1, u64::MAX)
                        .map(CategoryId)
                        .ok_or_else(|| InvalidField::new("category", "must be a category id"))?,
                );
            }
            "store" => {
                self.store = Some(
                    TenantId::parse(value)
                        .ok_or_else(|| InvalidField::new("store", "must be a store id"))?,
                );
            }
            "min_price" | "max_price" => {
                let price = number(value, 0, PRICE_MAX_MINOR as u64)
                    .map(|p| p as i64)
                    .ok_or_else(|| {
                        InvalidField::new(
                            name.to_owned(),
                            format!("must be 0..={PRICE_MAX_MINOR} minor units"),
                        )
                    })?;
                if name == "min_price" {
                    self.min_price = Some(price);
                } else {
                    self.max_price = Some(price);
                }
            }
            "currency" => {
                if value.len() != 3 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(InvalidField::new(
                        "currency",
                        "must be an ISO 4217 code such as EUR",
                    ));
                }
                self.currency = Some(value.to_owned());
            }
            "in_stock" => {
                self.in_stock = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(InvalidField::new("in_stock", "must be true or false")),
                });
            }
            other => {
                let Some(attribute) = other.strip_prefix("attr.") else {
                    return Ok(false);
                };
                let field = || other.to_owned();
                if attribute.is_empty() || attribute.chars().count() > 64 {
                    return Err(InvalidField::new(
                        field(),
                        "the name must be 1..=64 characters",
                    ));
                }
                if value.is_empty() || value.chars().count() > 256 {
                    return Err(InvalidField::new(
                        field(),
                        "the value must be 1..=256 characters",
                    ));
                }
                if self.attributes.len() == ATTRIBUTE_FILTERS_MAX {
                    return Err(InvalidField::new(
                        field(),
                        format!("at most {ATTRIBUTE_FILTERS_MAX} attribute filters"),
                    ));
                }
                self.attributes
                    .push((attribute.to_owned(), value.to_owned()));
            }
        }
        Ok(true)
    }

    /// What holds across filters: the price bounds are in order.
    pub fn check(&self) -> Result<(), InvalidField> {
        if let (Some(min), Some(max)) = (self.min_price, self.max_price) {
            if min > max {
                return Err(InvalidField::new("min_price", "must not exceed max_price"));
            }
        }
        Ok(())
    }
}

/// A browsing question, read from a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowseQuery {
    pub filters: Filters,
    pub status: StatusFilter,
    pub sort: BrowseSort,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl BrowseQuery {
    /// Reads the parameters of `GET /v1/products`; an unknown or repeated
    /// parameter, or a value out of its bounds, is refused with its name.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    ) -> Result<Self, InvalidField> {
        let mut seen: Vec<String> = Vec::new();
        let mut raw_cursor = None;
        let mut query = Self {
            filters: Filters::default(),
            status: StatusFilter::Visible,
            sort: BrowseSort::Newest,
            limit: PAGE_DEFAULT,
            cursor: None,
        };
        for (name, value) in pairs {
            if seen.iter().any(|s| *s == name) {
                return Err(InvalidField::new(name.into_owned(), "is given twice"));
            }
            seen.push(name.to_string());
            if query.filters.read(&name, &value)? {
                continue;
            }
            match name.as_ref() {
                "status" => {
                    query.status = StatusFilter::Only(match value.as_ref() {
                        "draft" => ProductStatus::Draft,
                        "active" => ProductStatus::Active,
                        "archived" => ProductStatus::Archived,
                        _ => {
                            return Err(InvalidField::new(
                                "status",
                                "must be one of draft, active, archived",
                            ))
                        }
                    });
                }
                "sort" => query.sort = BrowseSort::parse(&value)?,
                "limit" => {
                    query.limit = number(&value, 1, PAGE_MAX as u64)
                        .map(|n| n as usize)
                        .ok_or_else(|| {
                            InvalidField::new("limit", format!("must be 1..={PAGE_MAX}"))
                        })?;
                }
                "cursor" => raw_cursor = Some(value.into_owned()),
                other => {
                    return Err(InvalidField::new(
                        other.to_owned(),
                        "is not a parameter of this route",
                    ))
                }
            }
        }
        query.filters.check()?;
        query.cursor = raw_cursor
            .map(|raw| Cursor::decode(&raw, query.sort))
            .transpose()?;
        Ok(query)
    }

    /// Whether `product` passes the filters that read the product itself
    /// (status, price, currency, stock, attributes; not category, store or
    /// who may see it). `has_stock` tells whether a SKU has units available.
    pub fn admits(&self, product: &Product, has_stock: impl Fn(SkuId) -> bool) -> bool {
        if let StatusFilter::Only(status) = self.status {
            if product.status != status {
                return false;
            }
        }
        if self.filters.min_price.is_some() || self.filters.max_price.is_some() {
            let price = list_price(product);
            if self.filters.min_price.is_some_and(|min| price < min)
                || self.filters.max_price.is_some_and(|max| price > max)
            {
                return false;
            }
        }
        if let Some(currency) = &self.filters.currency {
            if list_currency(product) != currency {
                return false;
            }
        }
        if let Some(wanted) = self.filters.in_stock {
            if product.skus.iter().any(|s| has_stock(SkuId(s.id))) != wanted {
                return false;
            }
        }
        self.filters.attributes.iter().all(|(name, value)| {
            let matches = |attributes: &[(String, String)]| {
                attributes
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.eq_ignore_ascii_case(value))
            };
            matches(&product.attributes) || product.skus.iter().any(|s| matches(&s.attributes))
        })
    }

    /// Whether `place` comes after the cursor in the question's order
    /// (every place does without a cursor).
    pub fn after_cursor(&self, place: &Place) -> bool {
        let Some(cursor) = &self.cursor else {
            return true;
        };
        let order = compare(place, &cursor.after);
        match self.sort {
            BrowseSort::Newest | BrowseSort::PriceDesc => order == Ordering::Less,
            BrowseSort::Price | BrowseSort::Title => order == Ordering::Greater,
        }
    }
}

/// Places of one kind, compared by their key then id.
fn compare(a: &Place, b: &Place) -> Ordering {
    match (a, b) {
        (Place::Newest { id: x }, Place::Newest { id: y }) => x.cmp(y),
        (Place::Price { price: p, id: x }, Place::Price { price: q, id: y }) => (p, x).cmp(&(q, y)),
        (Place::Title { key: k, id: x }, Place::Title { key: l, id: y }) => (k, x).cmp(&(l, y)),
        _ => Ordering::Equal,
    }
}

/// A decimal number in `min..=max` with nothing else (no sign, no spaces).
pub(super) fn number(raw: &str, min: u64, max: u64) -> Option<u64> {
    if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::{Money, Sku};

    fn product(id: u128, title: &str, prices: &[i64]) -> Product {
        Product {
            id,
            tenant: "1".into(),
            version: 1,
            status: ProductStatus::Active,
            title: title.into(),
            description: String::new(),
            brand: String::new(),
            category: String::new(),
            attributes: vec![("material".into(), "Wool".into())],
            images: Vec::new(),
            options: Vec::new(),
            skus: prices
                .iter()
                .enumerate()
                .map(|(i, &amount)| Sku {
                    id: i as u64 + 1,
                    code: format!("S{i}"),
                    price: Money {
                        amount,
                        currency: "EUR".into(),
                    },
                    compare_at: None,
                    options: Vec::new(),
                    attributes: vec![("size".into(), format!("{i}"))],
                    low_stock_threshold: 0,
                })
                .collect(),
            created_at_ms: 0,
            updated_at_ms: 0,
            updated_by: String::new(),
        }
    }

    fn parse(query: &str) -> Result<BrowseQuery, InvalidField> {
        BrowseQuery::parse(form_urlencoded::parse(query.as_bytes()))
    }

    #[test]
    fn a_query_string_reads_into_its_filters() {
        let q = parse("category=7&store=0190a1b2-0000-7000-8000-00000000000c&status=draft&min_price=100&max_price=500&currency=EUR&in_stock=true&attr.size=M&attr.colour=red&sort=-price&limit=10").unwrap();
        assert_eq!(q.filters.category, Some(CategoryId(7)));
        assert_eq!(
            q.filters.store,
            Some(TenantId(0x0190a1b2_0000_7000_8000_00000000000c))
        );
        assert_eq!(q.status, StatusFilter::Only(ProductStatus::Draft));
        assert_eq!(
            (q.filters.min_price, q.filters.max_price),
            (Some(100), Some(500))
        );
        assert_eq!(q.filters.in_stock, Some(true));
        assert_eq!(q.filters.attributes.len(), 2);
        assert_eq!((q.sort, q.limit), (BrowseSort::PriceDesc, 10));
        let q = parse("").unwrap();
        assert_eq!(
            (q.sort, q.limit, q.status),
            (BrowseSort::Newest, PAGE_DEFAULT, StatusFilter::Visible)
        );
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        for (query, field) in [
            ("colour=red", "colour"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("min_price=-1", "min_price"),
            ("min_price=5&max_price=4", "min_price"),
            ("max_price=1000000000001", "max_price"),
            ("sort=rating", "sort"),
            ("sort=cheapest", "sort"),
            ("status=gone", "status"),
            ("in_stock=yes", "in_stock"),
            ("category=zero", "category"),
            ("category=0", "category"),
            ("currency=eur", "currency"),
            ("attr.=x", "attr."),
            ("attr.size=", "attr.size"),
            ("limit=5&limit=6", "limit"),
            ("cursor=zz", "cursor"),
            (
                "sort=price&cursor=n.0000000000000000000000000000002a",
                "cursor",
            ),
        ] {
            assert_eq!(parse(query).unwrap_err().field, field, "{query}");
        }
        let many: Vec<String> = (0..=ATTRIBUTE_FILTERS_MAX)
            .map(|i| format!("attr.a{i}=v"))
            .collect();
        assert!(parse(&many.join("&")).is_err());
    }

    #[test]
    fn cursors_read_back_as_written_for_their_order() {
        for (sort, after) in [
            (BrowseSort::Newest, Place::Newest { id: 42 }),
            (BrowseSort::Price, Place::Price { price: 1999, id: 7 }),
            (
                BrowseSort::PriceDesc,
                Place::Price {
                    price: 0,
                    id: u128::MAX,
                },
            ),
            (
                BrowseSort::Title,
                Place::Title {
                    key: "ünïcode tee".into(),
                    id: 9,
                },
            ),
        ] {
            let cursor = Cursor { sort, after };
            assert_eq!(Cursor::decode(&cursor.encode(), sort), Ok(cursor.clone()));
        }
    }

    #[test]
    fn title_keys_are_lower_case_and_cut_at_a_character_boundary() {
        assert_eq!(&*title_key("Wool HAT"), "wool hat");
        let long = "é".repeat(40);
        let key = title_key(&long);
        assert!(key.len() <= TITLE_KEY_MAX_BYTES && key.chars().all(|c| c == 'é'));
    }

    #[test]
    fn filters_read_the_list_price_stock_and_attributes() {
        let p = product(1, "Hat", &[1500, 900, 2000]);
        assert_eq!(list_price(&p), 900);
        let admits =
            |q: &str, stocked: &[u64]| parse(q).unwrap().admits(&p, |s| stocked.contains(&s.0));
        assert!(admits("min_price=900&max_price=900", &[]));
        assert!(!admits("min_price=901", &[]));
        assert!(!admits("max_price=899", &[]));
        assert!(admits("currency=EUR", &[]) && !admits("currency=USD", &[]));
        assert!(admits("in_stock=true", &[3]) && !admits("in_stock=true", &[]));
        assert!(admits("in_stock=false", &[]) && !admits("in_stock=false", &[2]));
        assert!(admits("attr.MATERIAL=wool&attr.size=2", &[]));
        assert!(!admits("attr.size=9", &[]));
        assert!(!admits("status=draft", &[]) && admits("status=active", &[]));
    }

    #[test]
    fn a_cursor_admits_only_what_comes_after_it_in_its_order() {
        let q = |s: &str, after: Place| {
            let sort = BrowseSort::parse(s).unwrap();
            let mut q = parse(&format!("sort={s}")).unwrap();
            q.cursor = Some(Cursor { sort, after });
            q
        };
        let newest = q("newest", Place::Newest { id: 10 });
        assert!(newest.after_cursor(&Place::Newest { id: 9 }));
        assert!(!newest.after_cursor(&Place::Newest { id: 10 }));
        let cheap = q("price", Place::Price { price: 5, id: 10 });
        assert!(cheap.after_cursor(&Place::Price { price: 5, id: 11 }));
        assert!(!cheap.after_cursor(&Place::Price { price: 4, id: 99 }));
        let dear = q("-price", Place::Price { price: 5, id: 10 });
        assert!(dear.after_cursor(&Place::Price { price: 5, id: 9 }));
        assert!(!dear.after_cursor(&Place::Price { price: 6, id: 1 }));
    }
}
