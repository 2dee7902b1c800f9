//! Search: what a search backend is asked and answers. The question is
//! `domain::search`; a backend keeps `SearchDoc`s, applies changes, makes
//! them visible at a commit that records the WAL sequence it covers, and
//! answers questions within a scope. The embedded tantivy index
//! (`tantivy`) is the default backend.

pub mod indexer;
pub mod tantivy;

use crate::domain::search::SearchDoc;

/// A change to the documents of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocChange {
    /// Adds the document, or replaces the product's.
    Upsert(Box<SearchDoc>),
    /// The product is gone from the index.
    Remove(u128),
}

/// Who asks, beyond the question's own filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchScope {
    /// A store whose every product the caller may find (drafts and
    /// archived ones too): a seller searching their own catalog.
    pub own_store: Option<String>,
}

/// One hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub product_id: u128,
    pub store: String,
    pub title: String,
    /// Part of the description with the matched words in `<b>`; empty when
    /// none of them is in it.
    pub snippet: String,
    /// The list price, minor units, and its currency.
    pub price: i64,
    pub currency: String,
    /// Relevance (0 when the order is not by relevance).
    pub score: f32,
}

/// How many hits have one value of a facet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// A page of hits, the facets over every hit, and how many there are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchAnswer {
    pub hits: Vec<Hit>,
    /// By facet name (`category`, `brand`, `price`, `attr.NAME`), most
    /// frequent value first.
    pub facets: Vec<(String, Vec<FacetCount>)>,
    pub total: usize,
}

/// A completion of what was typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub text: String,
    /// Set when the suggestion is a product's title.
    pub product_id: Option<u128>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(String),
    #[error("search index at {path}: {reason}")]
    Open { path: String, reason: String },
}
