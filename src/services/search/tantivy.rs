//! The embedded search backend: a tantivy index in the data directory.
//!
//! One document per product. Text fields are cut into words as
//! `domain::search::words_of` cuts a question (runs of letters and digits,
//! lower case), with positions for phrases. A question's word matches a
//! field exactly, as a prefix (the last word as typed) or within its typo
//! allowance, scored in that order (BM25 for the exact term, fixed weights
//! for expansions), with the title counting most. Filters and facets read
//! untokenised fields; every facet is a path of one facet field
//! (`/category/ID`, `/brand/NAME`, `/price/BUCKET`, `/attr/NAME/VALUE`).
//!
//! Changes are buffered in the writer and become visible at `commit`, which
//! also records the WAL sequence the index covers in the commit's payload,
//! so a restart knows where to resume and that the index is not ahead of
//! the WAL.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use tantivy::collector::{Count, FacetCollector, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, PhraseQuery, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{
    Facet, FacetOptions, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing,
    TextOptions, Value, FAST, INDEXED, STORED, STRING,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Score, Searcher,
    TantivyDocument, Term,
};

use super::{DocChange, FacetCount, Hit, SearchAnswer, SearchError, SearchScope, Suggestion};
use crate::domain::search::{
    price_bucket, Facet as FacetKind, SearchDoc, SearchQuery, SearchSort, SuggestQuery, Word,
};

/// The layout of the index's documents; an index of another version is
/// rebuilt, not read.
pub const SCHEMA_VERSION: u32 = 1;
/// Values listed per facet at most.
pub const FACET_VALUES_MAX: usize = 20;
/// Characters of description a snippet shows at most.
pub const SNIPPET_CHARS_MAX: usize = 160;

/// Field weights: a word in the title counts most.
const BOOSTS: [(&str, Score); 7] = [
    ("title", 4.0),
    ("sku_codes", 3.0),
    ("brand", 2.0),
    ("category_names", 1.5),
    ("options", 1.2),
    ("attribute_values", 1.0),
    ("description", 0.7),
];
/// An exact word scores its BM25; a prefix or a typo match scores a share
/// of the field's weight instead, so exact beats prefix beats typo.
const PREFIX_SCORE: Score = 0.6;
const TYPO_SCORE: Score = 0.3;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    store: Field,
    visible: Field,
    title: Field,
    description: Field,
    categories: Field,
    brand_key: Field,
    attributes: Field,
    price: Field,
    currency: Field,
    created: Field,
    in_stock: Field,
    facets: Field,
}

fn schema() -> (Schema, Fields) {
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let mut builder = Schema::builder();
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED),
        store: builder.add_text_field("store", STRING | STORED),
        visible: builder.add_text_field("visible", STRING),
        title: builder.add_text_field("title", words.clone() | STORED),
        description: builder.add_text_field("description", words.clone() | STORED),
        categories: builder.add_u64_field("categories", INDEXED),
        brand_key: builder.add_text_field("brand_key", STRING),
        attributes: builder.add_text_field("attributes", STRING),
        price: builder.add_i64_field("price", NumericOptions::default() | INDEXED | FAST | STORED),
        currency: builder.add_text_field("currency", STRING | STORED),
        created: builder.add_u64_field("created", FAST),
        in_stock: builder.add_u64_field("in_stock", INDEXED),
        facets: builder.add_facet_field("facets", FacetOptions::default()),
    };
    for name in [
        "brand",
        "category_names",
        "options",
        "attribute_values",
        "sku_codes",
    ] {
        builder.add_text_field(name, words.clone());
    }
    (builder.build(), fields)
}

/// The index and its one writer.
pub struct TantivyIndex {
    path: PathBuf,
    index: Index,
    fields: Fields,
    /// Text fields searched, with their weights.
    searched: Vec<(Field, Score)>,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    reader: IndexReader,
}

impl TantivyIndex {
    /// Opens the index in `dir`, or creates an empty one. `writer_memory_mb`
    /// bounds what the writer buffers before it writes a segment.
    pub fn open(dir: &Path, writer_memory_mb: usize) -> Result<Self, SearchError> {
        let open_error = |reason: String| SearchError::Open {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        let (schema, fields) = schema();
        let directory =
            tantivy::directory::MmapDirectory::open(dir).map_err(|e| open_error(e.to_string()))?;
        let index = Index::open_or_create(directory, schema)
            .map_err(|e| open_error(format!("{e} (rebuild it: remove the directory)")))?;
        let writer = index
            .writer_with_num_threads(1, writer_memory_mb.max(15) << 20)
            .map_err(|e| open_error(e.to_string()))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e: tantivy::TantivyError| open_error(e.to_string()))?;
        let named = index.schema();
        let searched = BOOSTS
            .iter()
            .map(|(name, boost)| {
                named
                    .get_field(name)
                    .map(|field| (field, *boost))
                    .map_err(|e| open_error(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path: dir.to_owned(),
            index,
            fields,
            searched,
            writer: Mutex::new(writer),
            reader,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The WAL sequence the last commit covers and the schema it was built
    /// with (`None`: never committed).
    pub fn committed(&self) -> Result<Option<(u32, u64)>, SearchError> {
        let metas = self.index.load_metas().map_err(index_error)?;
        Ok(metas.payload.as_deref().and_then(parse_payload))
    }

    /// Buffers changes; visible after the next `commit`.
    pub fn apply(&self, changes: Vec<DocChange>) -> Result<(), SearchError> {
        let writer = self.writer.lock();
        for change in changes {
            match change {
                DocChange::Upsert(doc) => {
                    writer.delete_term(id_term(self.fields.id, doc.product_id));
                    writer
                        .add_document(self.document(&doc))
                        .map_err(index_error)?;
                }
                DocChange::Remove(id) => {
                    writer.delete_term(id_term(self.fields.id, id));
                }
            }
        }
        Ok(())
    }

    /// Removes every document (before a rebuild); visible after `commit`.
    pub fn clear(&self) -> Result<(), SearchError> {
        self.writer
            .lock()
            .delete_all_documents()
            .map(|_| ())
            .map_err(index_error)
    }

    /// Makes what was applied durable and visible, recording that the index
    /// covers the WAL up to `applied_lsn`.
    pub fn commit(&self, applied_lsn: u64) -> Result<(), SearchError> {
        {
            let mut writer = self.writer.lock();
            let mut prepared = writer.prepare_commit().map_err(index_error)?;
            prepared.set_payload(&format!("v{SCHEMA_VERSION}:{applied_lsn}"));
            prepared.commit().map_err(index_error)?;
        }
        self.reader.reload().map_err(index_error)
    }

    /// Documents visible to searches.
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn document(&self, doc: &SearchDoc) -> TantivyDocument {
        let f = &self.fields;
        let schema = self.index.schema();
        let field = |name: &str| schema.get_field(name).expect("a field of our schema");
        let mut out = TantivyDocument::default();
        out.add_text(f.id, id_text(doc.product_id));
        out.add_text(f.store, &doc.store);
        if doc.public {
            out.add_text(f.visible, "public");
        }
        out.add_text(f.title, &doc.title);
        out.add_text(f.description, &doc.description);
        out.add_text(field("brand"), &doc.brand);
        if !doc.brand.is_empty() {
            out.add_text(f.brand_key, doc.brand.to_lowercase());
            out.add_facet(
                f.facets,
                Facet::from_path(["brand", &doc.brand.to_lowercase()]),
            );
        }
        for name in &doc.category_names {
            out.add_text(field("category_names"), name);
        }
        for id in &doc.categories {
            out.add_u64(f.categories, *id);
            out.add_facet(f.facets, Facet::from_path(["category", &id.to_string()]));
        }
        for option in &doc.options {
            out.add_text(field("options"), option);
        }
        for code in &doc.sku_codes {
            out.add_text(field("sku_codes"), code);
        }
        for pair in &doc.attributes {
            out.add_text(f.attributes, pair);
            if let Some((name, value)) = pair.split_once('=') {
                out.add_text(field("attribute_values"), value);
                out.add_facet(f.facets, Facet::from_path(["attr", name, value]));
            }
        }
        out.add_i64(f.price, doc.price);
        out.add_facet(
            f.facets,
            Facet::from_path(["price", &price_bucket(doc.price)]),
        );
        out.add_text(f.currency, &doc.currency);
        out.add_u64(f.created, doc.created_at_ms);
        out.add_u64(f.in_stock, u64::from(doc.in_stock));
        out
    }

    /// Answers `question` within `scope`: a page of hits, the facets asked
    /// for over every hit, and how many hits there are.
    pub fn search(
        &self,
        question: &SearchQuery,
        scope: &SearchScope,
    ) -> Result<SearchAnswer, SearchError> {
        let searcher = self.reader.searcher();
        let text = self.text_query(question);
        let query = self.filtered(text.as_deref(), question, scope);
        let mut facets = FacetCollector::for_field("facets");
        for facet in &question.facets {
            facets.add_facet(facet_root(facet).as_str());
        }
        let page = TopDocs::with_limit(question.limit).and_offset(question.offset);
        let (hits, total, counts): (Vec<(Score, DocAddress)>, usize, _) = match question.sort {
            SearchSort::Relevance => {
                searcher.search(&query, &(page.order_by_score(), Count, facets))
            }
            SearchSort::Price | SearchSort::PriceDesc => {
                let order = if question.sort == SearchSort::Price {
                    Order::Asc
                } else {
                    Order::Desc
                };
                searcher
                    .search(
                        &query,
                        &(
                            page.order_by_fast_field::<i64>("price", order),
                            Count,
                            facets,
                        ),
                    )
                    .map(|(hits, total, counts)| (unscored(hits), total, counts))
            }
            SearchSort::Newest => searcher
                .search(
                    &query,
                    &(
                        page.order_by_fast_field::<u64>("created", Order::Desc),
                        Count,
                        facets,
                    ),
                )
                .map(|(hits, total, counts)| (unscored(hits), total, counts)),
        }
        .map_err(index_error)?;
        let snippets = match &text {
            Some(text) => Some(
                SnippetGenerator::create(&searcher, text.as_ref(), self.fields.description)
                    .map_err(index_error)?,
            ),
            None => None,
        }
        .map(|mut generator| {
            generator.set_max_num_chars(SNIPPET_CHARS_MAX);
            generator
        });
        let hits = hits
            .into_iter()
            .map(|(score, address)| self.hit(&searcher, address, score, snippets.as_ref()))
            .collect::<Result<_, _>>()?;
        let facets = question
            .facets
            .iter()
            .map(|facet| {
                let values = counts
                    .top_k(facet_root(facet).as_str(), FACET_VALUES_MAX)
                    .into_iter()
                    .map(|(value, count)| FacetCount {
                        value: facet_value(value),
                        count,
                    })
                    .collect();
                (facet.name().into_owned(), values)
            })
            .collect();
        Ok(SearchAnswer {
            hits,
            facets,
            total,
        })
    }

    /// Titles that begin with (or nearly match) what was typed, best first.
    pub fn suggest(
        &self,
        question: &SuggestQuery,
        scope: &SearchScope,
    ) -> Result<Vec<Suggestion>, SearchError> {
        let searcher = self.reader.searcher();
        let words: Vec<Box<dyn Query>> = question
            .text
            .words
            .iter()
            .map(|word| self.word_in(word, &[(self.fields.title, 1.0)]))
            .collect();
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let text: Box<dyn Query> = Box::new(BooleanQuery::intersection(words));
        let query = self.filtered(Some(text.as_ref()), &SearchQuery::everything(), scope);
        let top = searcher
            .search(
                &query,
                &TopDocs::with_limit(question.limit).order_by_score(),
            )
            .map_err(index_error)?;
        let mut out: Vec<Suggestion> = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(index_error)?;
            let title = first_text(&doc, self.fields.title);
            if out.iter().any(|s| s.text.eq_ignore_ascii_case(&title)) {
                continue;
            }
            out.push(Suggestion {
                text: title,
                product_id: parse_id(&first_text(&doc, self.fields.id)),
            });
        }
        Ok(out)
    }

    fn hit(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        score: Score,
        snippets: Option<&SnippetGenerator>,
    ) -> Result<Hit, SearchError> {
        let doc: TantivyDocument = searcher.doc(address).map_err(index_error)?;
        let f = &self.fields;
        Ok(Hit {
            product_id: parse_id(&first_text(&doc, f.id))
                .ok_or_else(|| SearchError::Index("a document without an id".into()))?,
            store: first_text(&doc, f.store),
            title: first_text(&doc, f.title),
            snippet: snippets
                .map(|generator| generator.snippet_from_doc(&doc).to_html())
                .unwrap_or_default(),
            price: doc.get_first(f.price).and_then(|v| v.as_i64()).unwrap_or(0),
            currency: first_text(&doc, f.currency),
            score,
        })
    }

    /// What `q` asks for, or none without words.
    fn text_query(&self, question: &SearchQuery) -> Option<Box<dyn Query>> {
        let text = question.text.as_ref()?;
        let mut clauses: Vec<Box<dyn Query>> = text
            .words
            .iter()
            .map(|word| self.word_in(word, &self.searched))
            .collect();
        for phrase in &text.phrases {
            let in_fields: Vec<(Occur, Box<dyn Query>)> =
                [self.fields.title, self.fields.description]
                    .into_iter()
                    .map(|field| {
                        let terms = phrase
                            .iter()
                            .map(|w| Term::from_field_text(field, w))
                            .collect();
                        (
                            Occur::Should,
                            Box::new(PhraseQuery::new(terms)) as Box<dyn Query>,
                        )
                    })
                    .collect();
            clauses.push(Box::new(BooleanQuery::new(in_fields)));
        }
        Some(Box::new(BooleanQuery::intersection(clauses)))
    }

    /// One word in any of `fields`: exact, prefix, or within its typos.
    fn word_in(&self, word: &Word, fields: &[(Field, Score)]) -> Box<dyn Query> {
        let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for &(field, boost) in fields {
            let term = Term::from_field_text(field, &word.text);
            any.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
                    boost,
                )),
            ));
            if word.prefix {
                any.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(FuzzyTermQuery::new_prefix(term.clone(), 0, true)),
                        boost * PREFIX_SCORE,
                    )),
                ));
            }
            if word.typos > 0 {
                let fuzzy = if word.prefix {
                    FuzzyTermQuery::new_prefix(term, word.typos, true)
                } else {
                    FuzzyTermQuery::new(term, word.typos, true)
                };
                any.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(fuzzy), boost * TYPO_SCORE)),
                ));
            }
        }
        Box::new(BooleanQuery::new(any))
    }

    /// `text` (or everything) within the filters and what `scope` may see.
    fn filtered(
        &self,
        text: Option<&dyn Query>,
        question: &SearchQuery,
        scope: &SearchScope,
    ) -> BooleanQuery {
        let f = &self.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(
            Occur::Must,
            text.map_or_else(|| Box::new(AllQuery) as Box<dyn Query>, |q| q.box_clone()),
        )];
        let term = |field: Field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::Basic,
            ))
        };
        let public = term(f.visible, "public");
        let visible: Box<dyn Query> = match &scope.own_store {
            Some(own) => Box::new(BooleanQuery::new(vec![
                (Occur::Should, public),
                (Occur::Should, term(f.store, own)),
            ])),
            None => public,
        };
        must.push((Occur::Must, visible));
        let filters = &question.filters;
        if let Some(store) = filters.store {
            must.push((Occur::Must, term(f.store, &store.to_string())));
        }
        if let Some(category) = filters.category {
            must.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.categories, category.0),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if filters.min_price.is_some() || filters.max_price.is_some() {
            let bound = |price: Option<i64>| match price {
                Some(price) => Bound::Included(Term::from_field_i64(f.price, price)),
                None => Bound::Unbounded,
            };
            must.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    bound(filters.min_price),
                    bound(filters.max_price),
                )),
            ));
        }
        if let Some(currency) = &filters.currency {
            must.push((Occur::Must, term(f.currency, currency)));
        }
        if let Some(in_stock) = filters.in_stock {
            must.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.in_stock, u64::from(in_stock)),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if let Some(brand) = &question.brand {
            must.push((Occur::Must, term(f.brand_key, brand)));
        }
        for (name, value) in &filters.attributes {
            let pair = format!("{}={}", name.to_lowercase(), value.to_lowercase());
            must.push((Occur::Must, term(f.attributes, &pair)));
        }
        BooleanQuery::new(must)
    }
}

fn unscored<T>(hits: Vec<(T, DocAddress)>) -> Vec<(Score, DocAddress)> {
    hits.into_iter()
        .map(|(_, address)| (0.0, address))
        .collect()
}

fn facet_root(facet: &FacetKind) -> String {
    match facet {
        FacetKind::Category => "/category".into(),
        FacetKind::Brand => "/brand".into(),
        FacetKind::Price => "/price".into(),
        FacetKind::Attribute(name) => Facet::from_path(["attr", name.as_str()]).to_string(),
    }
}

/// The last step of a facet path, as the answer shows it.
fn facet_value(facet: &Facet) -> String {
    facet
        .to_path()
        .last()
        .map(|step| (*step).to_owned())
        .unwrap_or_default()
}

fn first_text(doc: &TantivyDocument, field: Field) -> String {
    doc.get_first(field)
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn id_text(id: u128) -> String {
    format!("{id:032x}")
}

fn parse_id(text: &str) -> Option<u128> {
    u128::from_str_radix(text, 16).ok()
}

fn id_term(field: Field, id: u128) -> Term {
    Term::from_field_text(field, &id_text(id))
}

/// `vVERSION:LSN` → (version, LSN).
fn parse_payload(payload: &str) -> Option<(u32, u64)> {
    let (version, lsn) = payload.strip_prefix('v')?.split_once(':')?;
    Some((version.parse().ok()?, lsn.parse().ok()?))
}

fn index_error(error: tantivy::TantivyError) -> SearchError {
    SearchError::Index(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::ProductStatus;
    use crate::domain::search::TypoRules;

    struct Spec {
        id: u128,
        store: &'static str,
        title: &'static str,
        description: &'static str,
        brand: &'static str,
        price: i64,
        public: bool,
        in_stock: bool,
        categories: &'static [(u64, &'static str)],
        attributes: &'static [&'static str],
    }

    fn doc(spec: &Spec) -> DocChange {
        DocChange::Upsert(Box::new(SearchDoc {
            product_id: spec.id,
            store: spec.store.into(),
            public: spec.public,
            status: if spec.public {
                ProductStatus::Active
            } else {
                ProductStatus::Draft
            },
            version: 1,
            title: spec.title.into(),
            description: spec.description.into(),
            brand: spec.brand.into(),
            categories: spec.categories.iter().map(|(id, _)| *id).collect(),
            category_names: spec.categories.iter().map(|(_, n)| (*n).into()).collect(),
            attributes: spec.attributes.iter().map(|a| (*a).into()).collect(),
            options: vec!["M".into()],
            sku_codes: vec![format!("SKU-{}", spec.id)],
            price: spec.price,
            currency: "EUR".into(),
            created_at_ms: spec.id as u64,
            in_stock: spec.in_stock,
        }))
    }

    const CLOTHES: &[(u64, &str)] = &[(11, "Hoodies"), (1, "Clothing")];
    const SHOES: &[(u64, &str)] = &[(21, "Sneakers"), (2, "Shoes")];
    const OTHER: &[(u64, &str)] = &[(31, "Things")];

    fn catalog() -> Vec<Spec> {
        let spec = |id, store, title, brand, price| Spec {
            id,
            store,
            title,
            description: "",
            brand,
            price,
            public: true,
            in_stock: true,
            categories: CLOTHES,
            attributes: &[],
        };
        vec![
            Spec {
                description: "A warm grey hoodie of organic cotton for cold mornings",
                attributes: &["colour=grey", "material=cotton"],
                ..spec(1, "a", "Grey Hoodie", "Acme", 4500)
            },
            Spec {
                attributes: &["colour=black"],
                ..spec(2, "a", "Black Zip Hoodie", "Acme", 5900)
            },
            Spec {
                categories: SHOES,
                attributes: &["colour=white"],
                ..spec(3, "b", "Running Sneakers", "Swift", 8900)
            },
            Spec {
                categories: SHOES,
                in_stock: false,
                ..spec(4, "b", "Court Sneakers", "Swift", 6900)
            },
            Spec {
                public: false,
                ..spec(5, "c", "Wool Hoodie Draft", "Knit", 3000)
            },
            Spec {
                categories: OTHER,
                ..spec(6, "c", "Boots", "Knit", 12000)
            },
            Spec {
                categories: OTHER,
                ..spec(7, "c", "Boats Poster", "Knit", 900)
            },
        ]
    }

    fn index() -> (tempfile::TempDir, TantivyIndex) {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivyIndex::open(&dir.path().join("search"), 20).unwrap();
        index.apply(catalog().iter().map(doc).collect()).unwrap();
        index.commit(42).unwrap();
        (dir, index)
    }

    fn ask(index: &TantivyIndex, query: &str) -> SearchAnswer {
        ask_as(index, query, &SearchScope::default())
    }

    fn ask_as(index: &TantivyIndex, query: &str, scope: &SearchScope) -> SearchAnswer {
        let question = SearchQuery::parse(
            form_urlencoded::parse(query.as_bytes()),
            TypoRules::default(),
        )
        .unwrap();
        index.search(&question, scope).unwrap()
    }

    fn ids(answer: &SearchAnswer) -> Vec<u128> {
        answer.hits.iter().map(|h| h.product_id).collect()
    }

    #[test]
    fn misspelled_and_unfinished_words_find_their_products_and_exact_words_rank_first() {
        let (_dir, index) = index();
        let mut hodie = ids(&ask(&index, "q=hodie "));
        hodie.sort();
        assert_eq!(hodie, vec![1, 2], "one typo; the draft (5) is not public");
        let sneekers = ids(&ask(&index, "q=sneekers "));
        assert!(
            sneekers.contains(&3) && sneekers.contains(&4),
            "{sneekers:?}"
        );
        assert_eq!(
            ids(&ask(&index, "q=hood")).len(),
            2,
            "the last word is a prefix"
        );
        assert!(
            ids(&ask(&index, "q=hood ")).is_empty(),
            "unless it is finished"
        );
        let boots = ids(&ask(&index, "q=boots "));
        assert_eq!(boots.first(), Some(&6), "exact before a typo: {boots:?}");
        assert!(boots.contains(&7), "boats is one typo away: {boots:?}");
        assert_eq!(
            ids(&ask(&index, "q=SKU-3 ")),
            vec![3],
            "codes are searchable"
        );
        assert!(
            ids(&ask(&index, "q=sku-33 ")).is_empty(),
            "no typos on codes"
        );
        assert_eq!(ids(&ask(&index, "q=\"grey hoodie\"")), vec![1]);
        assert!(
            ids(&ask(&index, "q=\"hoodie grey\"")).is_empty(),
            "phrases keep their order"
        );
        assert_eq!(
            ids(&ask(&index, "q=acme zip")),
            vec![2],
            "every word must match"
        );
    }

    #[test]
    fn filters_facets_and_orders_read_the_whole_filtered_result() {
        let (_dir, index) = index();
        let all = ask(&index, "facets=brand,category,price,attr.colour&sort=price");
        assert_eq!(all.total, 6, "every public product");
        assert_eq!(ids(&all), vec![7, 1, 2, 4, 3, 6]);
        let facet = |answer: &SearchAnswer, name: &str| -> Vec<(String, u64)> {
            let (_, values) = answer.facets.iter().find(|(n, _)| n == name).unwrap();
            let mut values: Vec<(String, u64)> =
                values.iter().map(|v| (v.value.clone(), v.count)).collect();
            values.sort();
            values
        };
        assert_eq!(
            facet(&all, "brand"),
            vec![("acme".into(), 2), ("knit".into(), 2), ("swift".into(), 2)]
        );
        assert_eq!(
            facet(&all, "category"),
            vec![
                ("1".into(), 2),
                ("11".into(), 2),
                ("2".into(), 2),
                ("21".into(), 2),
                ("31".into(), 2)
            ]
        );
        assert_eq!(
            facet(&all, "attr.colour"),
            vec![("black".into(), 1), ("grey".into(), 1), ("white".into(), 1)]
        );
        let filtered = ask(
            &index,
            "category=1&min_price=1000&max_price=6000&facets=brand,price&sort=-price",
        );
        assert_eq!(ids(&filtered), vec![2, 1]);
        assert_eq!(filtered.total, 2);
        assert_eq!(facet(&filtered, "brand"), vec![("acme".into(), 2)]);
        assert_eq!(
            facet(&filtered, "price"),
            vec![("2500-5000".into(), 1), ("5000-10000".into(), 1)]
        );
        assert_eq!(ids(&ask(&index, "brand=SWIFT&in_stock=false")), vec![4]);
        assert_eq!(ids(&ask(&index, "attr.Colour=Grey")), vec![1]);
        assert_eq!(
            ids(&ask(&index, "store=0190a1b2-0000-7000-8000-00000000000c")),
            Vec::<u128>::new()
        );
        assert_eq!(ids(&ask(&index, "sort=newest&limit=2")), vec![7, 6]);
        let second = ask(&index, "sort=newest&limit=2");
        assert_eq!(second.total, 6);
    }

    #[test]
    fn a_store_finds_its_own_drafts_and_nobody_else_does() {
        let (_dir, index) = index();
        let own = SearchScope {
            own_store: Some("c".into()),
        };
        assert!(ids(&ask_as(&index, "q=wool", &own)).contains(&5));
        assert!(ids(&ask(&index, "q=wool")).is_empty());
        let other = SearchScope {
            own_store: Some("a".into()),
        };
        assert!(ids(&ask_as(&index, "q=wool", &other)).is_empty());
    }

    #[test]
    fn changes_show_at_commit_and_survive_a_reopen_with_the_lsn_they_cover() {
        let (dir, index) = index();
        assert_eq!(index.committed().unwrap(), Some((SCHEMA_VERSION, 42)));
        let mut cheaper = catalog().remove(2);
        cheaper.price = 100;
        index
            .apply(vec![doc(&cheaper), DocChange::Remove(6)])
            .unwrap();
        assert_eq!(
            ids(&ask(&index, "sort=price&limit=1")),
            vec![7],
            "not before the commit"
        );
        index.commit(43).unwrap();
        assert_eq!(ids(&ask(&index, "sort=price&limit=1")), vec![3]);
        assert!(ids(&ask(&index, "q=boots ")).iter().all(|id| *id != 6));
        assert_eq!(index.documents(), 6);
        drop(index);
        let reopened = TantivyIndex::open(&dir.path().join("search"), 20).unwrap();
        assert_eq!(reopened.committed().unwrap(), Some((SCHEMA_VERSION, 43)));
        assert_eq!(ids(&ask(&reopened, "sort=price&limit=1")), vec![3]);
        reopened.clear().unwrap();
        reopened.commit(44).unwrap();
        assert_eq!(reopened.documents(), 0);
    }

    #[test]
    fn snippets_mark_the_words_and_suggestions_complete_titles() {
        let (_dir, index) = index();
        let answer = ask(&index, "q=organic hoodie");
        assert_eq!(ids(&answer), vec![1]);
        assert!(
            answer.hits[0].snippet.contains("<b>organic</b>"),
            "{}",
            answer.hits[0].snippet
        );
        let suggest =
            SuggestQuery::parse(form_urlencoded::parse(b"q=hoo"), TypoRules::default()).unwrap();
        let titles: Vec<String> = index
            .suggest(&suggest, &SearchScope::default())
            .unwrap()
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(titles.len(), 2, "{titles:?}");
        assert!(titles.iter().all(|t| t.contains("Hoodie")), "{titles:?}");
    }
}
