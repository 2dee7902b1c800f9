//! Searching the catalog: the question a shopper or seller asks (`q`,
//! filters, facets, order, page), how its words are read (typo allowance,
//! prefix on the last word, quoted phrases), what a product becomes in a
//! search index, and the page cursor. Backends (`services::search`) answer
//! the question; `policy` says who may search which store's drafts.
//!
//! Words are runs of letters and digits, compared in lower case. A word may
//! differ from an indexed word by one typo from `typo_one_from_chars`
//! characters on and two from `typo_two_from_chars`; a word with a digit in
//! it (a number, a SKU code) never. The last word of `q` also matches as a
//! prefix, for search-as-you-type, unless `q` ends in a space. Words inside
//! double quotes form a phrase: exact words in that order.

use std::borrow::Cow;

use super::browse::Filters;
use super::product::{Product, ProductStatus};
use super::InvalidField;

/// Characters in `q` at most.
pub const QUERY_CHARS_MAX: usize = 256;
/// Words (phrase words included) in `q` at most.
pub const WORDS_MAX: usize = 16;
/// Characters in one word at most.
pub const WORD_CHARS_MAX: usize = 64;
/// A last word shorter than this is not expanded as a prefix.
pub const PREFIX_CHARS_MIN: usize = 2;
/// Facets asked for in one question at most.
pub const FACETS_MAX: usize = 8;
/// Hits in a page: the default and the largest.
pub const PAGE_DEFAULT: usize = 20;
pub const PAGE_MAX: usize = 100;
/// Hits past this rank are not paged to: refine the question instead.
pub const DEPTH_MAX: usize = 1_000;
/// Characters of a brand filter at most.
pub const BRAND_CHARS_MAX: usize = 128;
/// Suggestions: characters of `q` at most, and how many by default and at most.
pub const SUGGEST_CHARS_MAX: usize = 100;
pub const SUGGEST_DEFAULT: usize = 8;
pub const SUGGEST_MAX: usize = 20;

/// Upper bounds (exclusive, minor units) of the price facet's buckets; the
/// last bucket has none.
pub const PRICE_BUCKETS_MINOR: [i64; 7] = [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000];

/// How many typos a word may have, by its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypoRules {
    /// Words of at least this many characters may have one typo.
    pub one_from_chars: usize,
    /// Words of at least this many characters may have two.
    pub two_from_chars: usize,
}

impl Default for TypoRules {
    fn default() -> Self {
        Self {
            one_from_chars: 5,
            two_from_chars: 9,
        }
    }
}

impl TypoRules {
    /// Typos `word` may have: none with a digit in it (numbers, SKU codes).
    pub fn allowed(&self, word: &str) -> u8 {
        if word.chars().any(|c| c.is_numeric()) {
            return 0;
        }
        let chars = word.chars().count();
        if chars >= self.two_from_chars {
            2
        } else if chars >= self.one_from_chars {
            1
        } else {
            0
        }
    }
}

/// One word of `q`, in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// Edits (Levenshtein, a transposition counting one) it may differ by.
    pub typos: u8,
    /// It also matches words it begins (the last word, as typed).
    pub prefix: bool,
}

/// What `q` asks for: words that each must match (any field), and phrases.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryText {
    pub words: Vec<Word>,
    /// Each phrase's words, exact and in order.
    pub phrases: Vec<Vec<String>>,
}

impl QueryText {
    /// Reads `q`: bounded, no control characters, balanced quotes, at least one word.
    pub fn parse(raw: &str, rules: TypoRules) -> Result<Self, InvalidField> {
        let invalid = |reason: String| InvalidField::new("q", reason);
        if raw.chars().count() > QUERY_CHARS_MAX {
            return Err(invalid(format!(
                "must be at most {QUERY_CHARS_MAX} characters"
            )));
        }
        if raw.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters".into()));
        }
        if !raw.matches('"').count().is_multiple_of(2) {
            return Err(invalid("has an unclosed double quote".into()));
        }
        let mut text = Self::default();
        let mut words_seen = 0;
        for (index, segment) in raw.split('"').enumerate() {
            let in_phrase = index % 2 == 1;
            let words = words_of(segment);
            words_seen += words.len();
            if words_seen > WORDS_MAX {
                return Err(invalid(format!("must have at most {WORDS_MAX} words")));
            }
            if let Some(long) = words.iter().find(|w| w.chars().count() > WORD_CHARS_MAX) {
                return Err(invalid(format!(
                    "words are at most {WORD_CHARS_MAX} characters ({}... is longer)",
                    long.chars().take(16).collect::<String>()
                )));
            }
            if in_phrase {
                match words.len() {
                    0 => {}
                    // A quoted single word is that word, exact.
                    1 => text.words.extend(words.into_iter().map(|word| Word {
                        text: word,
                        typos: 0,
                        prefix: false,
                    })),
                    _ => text.phrases.push(words),
                }
            } else {
                text.words.extend(words.into_iter().map(|word| Word {
                    typos: rules.allowed(&word),
                    text: word,
                    prefix: false,
                }));
            }
        }
        if text.words.is_empty() && text.phrases.is_empty() {
            return Err(invalid("must contain a word (letters or digits)".into()));
        }
        // The last word as typed so far: `q` ends in it, not in a space or a
        // closing quote (so it is outside quotes).
        if raw.chars().last().is_some_and(char::is_alphanumeric) {
            if let Some(last) = text.words.last_mut() {
                last.prefix = last.text.chars().count() >= PREFIX_CHARS_MIN;
            }
        }
        Ok(text)
    }
}

/// The words of `text`: runs of letters and digits, in lower case. The same
/// cut applies to what is indexed, so a query word meets indexed words.
pub fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// What a facet counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facet {
    Category,
    Brand,
    /// The list price, in `PRICE_BUCKETS_MINOR` buckets.
    Price,
    /// An attribute's values (name in lower case).
    Attribute(String),
}

impl Facet {
    /// As written in `facets=` and in the answer's `facets` object.
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            Self::Category => "category".into(),
            Self::Brand => "brand".into(),
            Self::Price => "price".into(),
            Self::Attribute(name) => format!("attr.{name}").into(),
        }
    }
}

/// The orders hits can come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchSort {
    /// Best match first (BM25 with field boosts); newest without `q`.
    Relevance,
    Price,
    PriceDesc,
    Newest,
}

/// A search question, read from a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// None: every product the filters let through.
    pub text: Option<QueryText>,
    pub filters: Filters,
    /// The brand, compared without regard to case.
    pub brand: Option<String>,
    pub facets: Vec<Facet>,
    pub sort: SearchSort,
    pub limit: usize,
    /// Hits skipped (from the cursor).
    pub offset: usize,
}

impl SearchQuery {
    /// Every product the scope may see, newest first, one default page.
    pub fn everything() -> Self {
        Self {
            text: None,
            filters: Filters::default(),
            brand: None,
            facets: Vec::new(),
            sort: SearchSort::Newest,
            limit: PAGE_DEFAULT,
            offset: 0,
        }
    }

    /// Reads the parameters of `GET /v1/search`; an unknown or repeated
    /// parameter, or a value out of its bounds, is refused with its name.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
        rules: TypoRules,
    ) -> Result<Self, InvalidField> {
        let mut seen: Vec<String> = Vec::new();
        let mut raw_cursor = None;
        let mut raw_sort = None;
        let mut query = Self::everything();
        for (name, value) in pairs {
            if seen.iter().any(|s| *s == name) {
                return Err(InvalidField::new(name.into_owned(), "is given twice"));
            }
            seen.push(name.to_string());
            if query.filters.read(&name, &value)? {
                continue;
            }
            match name.as_ref() {
                "q" => query.text = Some(QueryText::parse(&value, rules)?),
                "brand" => {
                    let chars = value.chars().count();
                    if chars == 0 || chars > BRAND_CHARS_MAX || value.chars().any(char::is_control)
                    {
                        return Err(InvalidField::new(
                            "brand",
                            format!("must be 1..={BRAND_CHARS_MAX} characters"),
                        ));
                    }
                    query.brand = Some(value.to_lowercase());
                }
                "facets" => query.facets = parse_facets(&value)?,
                "sort" => raw_sort = Some(value.into_owned()),
                "limit" => {
                    query.limit = bounded(&value, 1, PAGE_MAX).ok_or_else(|| {
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
        query.sort = match raw_sort.as_deref() {
            None | Some("relevance") if query.text.is_some() => SearchSort::Relevance,
            None | Some("relevance") | Some("newest") => SearchSort::Newest,
            Some("price") => SearchSort::Price,
            Some("-price") => SearchSort::PriceDesc,
            Some("rating") => {
                return Err(InvalidField::new(
                    "sort",
                    "products have no ratings yet: sorting by rating arrives with reviews",
                ))
            }
            Some(_) => {
                return Err(InvalidField::new(
                    "sort",
                    "must be one of relevance, price, -price, newest",
                ))
            }
        };
        if let Some(raw) = raw_cursor {
            query.offset = SearchCursor::decode(&raw, query.fingerprint())?.offset;
        }
        if query.offset + query.limit > DEPTH_MAX {
            return Err(InvalidField::new(
                "cursor",
                format!("hits past the first {DEPTH_MAX} are not paged to: narrow the question"),
            ));
        }
        Ok(query)
    }

    /// The cursor of the page after this one, if there can be one: `total`
    /// hits match and the next page stays within `DEPTH_MAX`.
    pub fn next_cursor(&self, total: usize) -> Option<String> {
        let next = self.offset + self.limit;
        (next < total && next < DEPTH_MAX).then(|| {
            SearchCursor {
                offset: next,
                fingerprint: self.fingerprint(),
            }
            .encode()
        })
    }

    /// What the question asks, without its page: a cursor from another
    /// question is refused rather than read as an offset into this one.
    fn fingerprint(&self) -> u64 {
        let described = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            self.text, self.filters, self.brand, self.facets, self.sort
        );
        fnv1a(described.as_bytes())
    }
}

fn parse_facets(raw: &str) -> Result<Vec<Facet>, InvalidField> {
    let invalid = |reason: String| InvalidField::new("facets", reason);
    let mut facets = Vec::new();
    for name in raw.split(',') {
        let facet = match name {
            "category" => Facet::Category,
            "brand" => Facet::Brand,
            "price" => Facet::Price,
            other => match other.strip_prefix("attr.") {
                Some(attribute)
                    if !attribute.is_empty()
                        && attribute.chars().count() <= 64
                        && !attribute.chars().any(char::is_control) =>
                {
                    Facet::Attribute(attribute.to_lowercase())
                }
                _ => {
                    return Err(invalid(
                        "each must be category, brand, price or attr.NAME".into(),
                    ))
                }
            },
        };
        if facets.contains(&facet) {
            return Err(invalid(format!("{} is asked twice", facet.name())));
        }
        facets.push(facet);
    }
    if facets.len() > FACETS_MAX {
        return Err(invalid(format!("at most {FACETS_MAX} facets")));
    }
    Ok(facets)
}

/// A page's position: `o.OFFSET.FINGERPRINT` (hex), the fingerprint being
/// that of the question it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SearchCursor {
    offset: usize,
    fingerprint: u64,
}

impl SearchCursor {
    fn encode(self) -> String {
        format!("o.{}.{:016x}", self.offset, self.fingerprint)
    }

    fn decode(raw: &str, fingerprint: u64) -> Result<Self, InvalidField> {
        let invalid = || InvalidField::new("cursor", "must be a next_cursor of the same question");
        let mut parts = raw.split('.');
        if parts.next() != Some("o") {
            return Err(invalid());
        }
        let offset = parts
            .next()
            .and_then(|t| bounded(t, 1, DEPTH_MAX))
            .ok_or_else(invalid)?;
        let stamped = parts
            .next()
            .filter(|t| t.len() == 16)
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .ok_or_else(invalid)?;
        if parts.next().is_some() || stamped != fingerprint {
            return Err(invalid());
        }
        Ok(Self {
            offset,
            fingerprint,
        })
    }
}

/// A suggestion question: `GET /v1/search/suggest?q=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuggestQuery {
    /// The words typed so far; the last one is a prefix unless `q` ends in a space.
    pub text: QueryText,
    pub limit: usize,
}

impl SuggestQuery {
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
        rules: TypoRules,
    ) -> Result<Self, InvalidField> {
        let mut text = None;
        let mut limit = None;
        for (name, value) in pairs {
            match name.as_ref() {
                "q" if text.is_none() => {
                    if value.chars().count() > SUGGEST_CHARS_MAX {
                        return Err(InvalidField::new(
                            "q",
                            format!("must be at most {SUGGEST_CHARS_MAX} characters"),
                        ));
                    }
                    text = Some(QueryText::parse(&value, rules)?);
                }
                "limit" if limit.is_none() => {
                    limit = Some(bounded(&value, 1, SUGGEST_MAX).ok_or_else(|| {
                        InvalidField::new("limit", format!("must be 1..={SUGGEST_MAX}"))
                    })?);
                }
                "q" | "limit" => {
                    return Err(InvalidField::new(name.into_owned(), "is given twice"))
                }
                other => {
                    return Err(InvalidField::new(
                        other.to_owned(),
                        "is not a parameter of this route",
                    ))
                }
            }
        }
        Ok(Self {
            text: text.ok_or_else(|| InvalidField::new("q", "is required"))?,
            limit: limit.unwrap_or(SUGGEST_DEFAULT),
        })
    }
}

/// What a product is in a search index: its words by field, what filters,
/// facets and orders read, and whether shoppers may find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDoc {
    pub product_id: u128,
    /// The store (tenant id as text).
    pub store: String,
    /// Shoppers find it: the product is active and its store is.
    pub public: bool,
    pub status: ProductStatus,
    pub version: u64,
    pub title: String,
    pub description: String,
    pub brand: String,
    /// The product's category and its ancestors, nearest first.
    pub categories: Vec<u64>,
    /// Their names, searchable.
    pub category_names: Vec<String>,
    /// `name=value` of the product's and its variants' attributes, in lower
    /// case, each once: filters and facets read these.
    pub attributes: Vec<String>,
    /// Variant option values (sizes, colours), each once.
    pub options: Vec<String>,
    pub sku_codes: Vec<String>,
    /// The list price (lowest variant price), minor units, and its currency.
    pub price: i64,
    pub currency: String,
    pub created_at_ms: u64,
    /// Some variant had units available when the document was made.
    pub in_stock: bool,
}

/// What a product's document needs besides the product.
#[derive(Debug, Clone, Default)]
pub struct DocContext {
    /// Its category and the category's ancestors, nearest first, with names.
    pub categories: Vec<(u64, String)>,
    pub store_active: bool,
    pub in_stock: bool,
}

impl SearchDoc {
    pub fn of(product: &Product, context: DocContext) -> Self {
        let mut attributes: Vec<String> = product
            .attributes
            .iter()
            .chain(product.skus.iter().flat_map(|s| s.attributes.iter()))
            .map(|(name, value)| format!("{}={}", name.to_lowercase(), value.to_lowercase()))
            .collect();
        attributes.sort();
        attributes.dedup();
        let mut options: Vec<String> = product
            .skus
            .iter()
            .flat_map(|s| s.options.iter().cloned())
            .collect();
        options.sort();
        options.dedup();
        let (categories, category_names) = context.categories.into_iter().unzip();
        Self {
            product_id: product.id,
            store: product.tenant.clone(),
            public: product.status == ProductStatus::Active && context.store_active,
            status: product.status,
            version: product.version,
            title: product.title.clone(),
            description: product.description.clone(),
            brand: product.brand.clone(),
            categories,
            category_names,
            attributes,
            options,
            sku_codes: product.skus.iter().map(|s| s.code.clone()).collect(),
            price: super::browse::list_price(product),
            currency: super::browse::list_currency(product).to_owned(),
            created_at_ms: product.created_at_ms,
            in_stock: context.in_stock,
        }
    }
}

/// The price facet's bucket of `price`: `FROM-TO` in minor units (`TO`
/// exclusive), or `FROM-` for the last one.
pub fn price_bucket(price: i64) -> String {
    let mut from = 0;
    for upper in PRICE_BUCKETS_MINOR {
        if price < upper {
            return format!("{from}-{upper}");
        }
        from = upper;
    }
    format!("{from}-")
}

/// A decimal number in `min..=max` with nothing else (no sign, no spaces).
fn bounded(raw: &str, min: usize, max: usize) -> Option<usize> {
    super::browse::number(raw, min as u64, max as u64).map(|n| n as usize)
}

/// 64-bit FNV-1a: stable across builds and runs (cursors outlive a process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::{Money, Sku};

    fn parse(query: &str) -> Result<SearchQuery, InvalidField> {
        SearchQuery::parse(
            form_urlencoded::parse(query.as_bytes()),
            TypoRules::default(),
        )
    }

    fn text(q: &str) -> Result<QueryText, InvalidField> {
        QueryText::parse(q, TypoRules::default())
    }

    fn word(text: &str, typos: u8, prefix: bool) -> Word {
        Word {
            text: text.into(),
            typos,
            prefix,
        }
    }

    #[test]
    fn typos_follow_word_length_and_never_touch_numbers_or_codes() {
        let rules = TypoRules::default();
        for (w, typos) in [
            ("hat", 0),
            ("wool", 0),
            ("hodie", 1),
            ("sneekers", 1),
            ("sweatshirt", 2),
            ("12345", 0),
            ("tee2024xl", 0),
            ("ünïcöde", 1),
        ] {
            assert_eq!(rules.allowed(w), typos, "{w}");
        }
        let strict = TypoRules {
            one_from_chars: 100,
            two_from_chars: 200,
        };
        assert_eq!(strict.allowed("sweatshirt"), 0);
    }

    #[test]
    fn words_are_lower_case_the_last_is_a_prefix_and_quotes_make_phrases() {
        assert_eq!(
            text("Wool HODIE").unwrap().words,
            vec![word("wool", 0, false), word("hodie", 1, true)]
        );
        assert_eq!(
            text("wool hoodie ").unwrap().words,
            vec![word("wool", 0, false), word("hoodie", 1, false)],
            "a trailing space ends the word"
        );
        assert_eq!(text("t").unwrap().words, vec![word("t", 0, false)]);
        let quoted = text("\"Red Wool\" hat").unwrap();
        assert_eq!(
            quoted.phrases,
            vec![vec!["red".to_owned(), "wool".to_owned()]]
        );
        assert_eq!(quoted.words, vec![word("hat", 0, true)]);
        let exact = text("\"sneakers\"").unwrap();
        assert_eq!(exact.words, vec![word("sneakers", 0, false)]);
        assert_eq!(
            text("tee-shirt, SKU-42").unwrap().words.len(),
            4,
            "punctuation cuts words"
        );
    }

    #[test]
    fn bad_text_is_refused() {
        for q in [
            "",
            "   ",
            "!!! ???",
            "\"unclosed",
            "bell\u{7}",
            "tab\there",
            "\"\"",
        ] {
            assert_eq!(text(q).unwrap_err().field, "q", "{q:?}");
        }
        assert!(text(&"a".repeat(QUERY_CHARS_MAX + 1)).is_err());
        assert!(text(&"w ".repeat(WORDS_MAX + 1)).is_err());
        assert!(text(&"w ".repeat(WORDS_MAX)).is_ok());
        assert!(text(&"x".repeat(WORD_CHARS_MAX + 1)).is_err());
    }

    #[test]
    fn a_query_string_reads_into_text_filters_facets_and_order() {
        let q = parse("q=hoodie&category=7&store=0190a1b2-0000-7000-8000-00000000000c&min_price=100&max_price=5000&in_stock=true&brand=Acme&attr.size=M&facets=category,brand,price,attr.Colour&limit=10").unwrap();
        assert!(q.text.is_some());
        assert_eq!(q.filters.category.map(|c| c.0), Some(7));
        assert!(q.filters.store.is_some());
        assert_eq!(
            (q.filters.min_price, q.filters.max_price),
            (Some(100), Some(5000))
        );
        assert_eq!(q.filters.in_stock, Some(true));
        assert_eq!(q.brand.as_deref(), Some("acme"));
        assert_eq!(
            q.facets,
            vec![
                Facet::Category,
                Facet::Brand,
                Facet::Price,
                Facet::Attribute("colour".into())
            ]
        );
        assert_eq!((q.sort, q.limit, q.offset), (SearchSort::Relevance, 10, 0));
        let all = parse("").unwrap();
        assert_eq!(
            (all.text, all.sort, all.limit),
            (None, SearchSort::Newest, PAGE_DEFAULT),
            "without words, newest first"
        );
        assert_eq!(
            parse("q=hat&sort=-price").unwrap().sort,
            SearchSort::PriceDesc
        );
        assert_eq!(parse("q=hat&sort=newest").unwrap().sort, SearchSort::Newest);
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        for (query, field) in [
            ("colour=red", "colour"),
            ("q=", "q"),
            ("q=a&q=b", "q"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=-1", "limit"),
            ("min_price=9&max_price=8", "min_price"),
            ("sort=rating", "sort"),
            ("sort=cheapest", "sort"),
            ("facets=colour", "facets"),
            ("facets=brand,brand", "facets"),
            ("facets=", "facets"),
            ("facets=attr.", "facets"),
            ("brand=", "brand"),
            ("in_stock=maybe", "in_stock"),
            ("cursor=zz", "cursor"),
            ("cursor=o.10.0000000000000000", "cursor"),
        ] {
            assert_eq!(parse(query).unwrap_err().field, field, "{query}");
        }
        let many: Vec<String> = (0..=FACETS_MAX).map(|i| format!("attr.a{i}")).collect();
        assert_eq!(
            parse(&format!("facets={}", many.join(",")))
                .unwrap_err()
                .field,
            "facets"
        );
    }

    #[test]
    fn a_cursor_pages_its_own_question_only_and_only_so_deep() {
        let first = parse("q=hat&limit=20").unwrap();
        let cursor = first.next_cursor(100).expect("more hits");
        let second = parse(&format!("q=hat&limit=20&cursor={cursor}")).unwrap();
        assert_eq!(second.offset, 20);
        assert!(
            parse(&format!("q=hat&limit=50&cursor={cursor}")).is_ok(),
            "the page size may change"
        );
        assert_eq!(
            parse(&format!("q=cap&limit=20&cursor={cursor}"))
                .unwrap_err()
                .field,
            "cursor",
            "another question's cursor"
        );
        assert_eq!(first.next_cursor(20), None, "no page after the last hit");
        let deep = parse("q=hat&limit=100").unwrap();
        let mut query = deep.clone();
        let mut pages = 1;
        while let Some(next) = query.next_cursor(usize::MAX) {
            query = parse(&format!("q=hat&limit=100&cursor={next}")).unwrap();
            pages += 1;
        }
        assert_eq!(pages * 100, DEPTH_MAX, "pages stop at the depth bound");
        let too_deep = format!("o.{}.{:016x}", DEPTH_MAX - 10, deep.fingerprint());
        assert_eq!(
            parse(&format!("q=hat&limit=100&cursor={too_deep}"))
                .unwrap_err()
                .field,
            "cursor"
        );
    }

    #[test]
    fn a_suggestion_needs_words_and_a_bounded_limit() {
        let rules = TypoRules::default();
        let suggest = |q: &str| SuggestQuery::parse(form_urlencoded::parse(q.as_bytes()), rules);
        let s = suggest("q=hoo").unwrap();
        assert_eq!(s.text.words, vec![word("hoo", 0, true)]);
        assert_eq!(s.limit, SUGGEST_DEFAULT);
        assert_eq!(suggest("q=hoo&limit=3").unwrap().limit, 3);
        for (q, field) in [
            ("", "q"),
            ("limit=3", "q"),
            ("q=", "q"),
            ("q=a&q=b", "q"),
            ("q=a&limit=0", "limit"),
            ("q=a&limit=21", "limit"),
            ("q=a&store=1", "store"),
        ] {
            assert_eq!(suggest(q).unwrap_err().field, field, "{q}");
        }
        assert!(suggest(&format!("q={}", "a".repeat(SUGGEST_CHARS_MAX + 1))).is_err());
    }

    fn product(status: ProductStatus) -> Product {
        let sku = |id: u64, amount: i64, size: &str| Sku {
            id,
            code: format!("HOOD-{size}"),
            price: Money {
                amount,
                currency: "EUR".into(),
            },
            compare_at: None,
            options: vec![size.into(), "Grey".into()],
            attributes: vec![("Material".into(), "Wool".into())],
            low_stock_threshold: 0,
        };
        Product {
            id: 9,
            tenant: "store-1".into(),
            version: 3,
            status,
            title: "Grey Hoodie".into(),
            description: "Warm".into(),
            brand: "Acme".into(),
            category: "hoodies".into(),
            attributes: vec![
                ("material".into(), "WOOL".into()),
                ("fit".into(), "Loose".into()),
            ],
            images: Vec::new(),
            options: Vec::new(),
            skus: vec![sku(1, 4500, "M"), sku(2, 3900, "L")],
            created_at_ms: 77,
            updated_at_ms: 78,
            updated_by: String::new(),
        }
    }

    #[test]
    fn a_document_holds_what_search_filters_and_facets_read() {
        let context = DocContext {
            categories: vec![(12, "Hoodies".into()), (3, "Clothing".into())],
            store_active: true,
            in_stock: true,
        };
        let doc = SearchDoc::of(&product(ProductStatus::Active), context.clone());
        assert!(doc.public);
        assert_eq!(doc.categories, vec![12, 3]);
        assert_eq!(doc.category_names, vec!["Hoodies", "Clothing"]);
        assert_eq!(
            doc.attributes,
            vec!["fit=loose", "material=wool"],
            "each once, lower case"
        );
        assert_eq!(doc.options, vec!["Grey", "L", "M"]);
        assert_eq!(doc.sku_codes, vec!["HOOD-M", "HOOD-L"]);
        assert_eq!((doc.price, doc.currency.as_str()), (3900, "EUR"));
        assert_eq!(
            (doc.version, doc.created_at_ms, doc.in_stock),
            (3, 77, true)
        );
        assert!(!SearchDoc::of(&product(ProductStatus::Draft), context.clone()).public);
        assert!(!SearchDoc::of(&product(ProductStatus::Archived), context.clone()).public);
        let suspended = DocContext {
            store_active: false,
            ..context
        };
        assert!(!SearchDoc::of(&product(ProductStatus::Active), suspended).public);
    }

    #[test]
    fn prices_fall_into_buckets() {
        assert_eq!(price_bucket(0), "0-1000");
        assert_eq!(price_bucket(999), "0-1000");
        assert_eq!(price_bucket(1_000), "1000-2500");
        assert_eq!(price_bucket(99_999), "50000-100000");
        assert_eq!(price_bucket(100_000), "100000-");
    }
}
