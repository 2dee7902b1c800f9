//! Bulk import of products: the file layout and how its rows become
//! products. A file is CSV with a header row, or JSON lines whose objects
//! use the same names; either way one row is one variant, and consecutive
//! rows with the same `handle` are one product (its product columns are
//! read from its first row; a later row may leave them empty or repeat
//! them). A product is matched to the catalog by its variants' SKU codes:
//! codes no product has make a new product, codes of one product of the
//! store replace it whole (as `PUT` does, so the same file twice changes
//! nothing), anything else is refused. Also the job's state, counts and row
//! errors, as kept and shown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::product::{Image, NewProduct, NewSku, OptionAxis, ProductStatus};
use super::InvalidField;

/// The columns of the layout, in the order the documentation lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Handle,
    Title,
    Description,
    Brand,
    Category,
    Status,
    /// `URL` or `URL|alt text`, entries separated by `;`.
    Images,
    /// `name=value` pairs separated by `;`.
    Attributes,
    /// Option axes: `size=S|M|L;colour=red|blue`.
    Options,
    Sku,
    /// Minor units.
    Price,
    Currency,
    CompareAt,
    /// The variant's value on each axis, in the axes' order, `;`-separated.
    OptionValues,
    /// The variant's `name=value` pairs.
    SkuAttributes,
    LowStockThreshold,
}

pub const COLUMNS: [Column; 16] = [
    Column::Handle,
    Column::Title,
    Column::Description,
    Column::Brand,
    Column::Category,
    Column::Status,
    Column::Images,
    Column::Attributes,
    Column::Options,
    Column::Sku,
    Column::Price,
    Column::Currency,
    Column::CompareAt,
    Column::OptionValues,
    Column::SkuAttributes,
    Column::LowStockThreshold,
];

/// Columns every file has.
const REQUIRED: [Column; 4] = [Column::Handle, Column::Sku, Column::Price, Column::Currency];
/// Columns read from a product's first row only.
const PRODUCT_COLUMNS: [Column; 8] = [
    Column::Title,
    Column::Description,
    Column::Brand,
    Column::Category,
    Column::Status,
    Column::Images,
    Column::Attributes,
    Column::Options,
];
/// A cell is at most this long (the longest field, a description, is 5,000
/// characters of up to 4 bytes).
pub const CELL_MAX_BYTES: usize = 20_480;

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::Handle => "handle",
            Column::Title => "title",
            Column::Description => "description",
            Column::Brand => "brand",
            Column::Category => "category",
            Column::Status => "status",
            Column::Images => "images",
            Column::Attributes => "attributes",
            Column::Options => "options",
            Column::Sku => "sku",
            Column::Price => "price",
            Column::Currency => "currency",
            Column::CompareAt => "compare_at",
            Column::OptionValues => "option_values",
            Column::SkuAttributes => "sku_attributes",
            Column::LowStockThreshold => "low_stock_threshold",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        COLUMNS.iter().copied().find(|c| c.name() == name)
    }

    fn index(self) -> usize {
        COLUMNS.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// A file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    Csv,
    JsonLines,
}

/// A row that could not take effect, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// 1-based line of the file (a CSV record's first line).
    pub line: u64,
    /// The column at fault, or `row` for the row as a whole.
    pub field: String,
    pub reason: String,
}

impl RowError {
    pub fn new(line: u64, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            line,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Which columns of a CSV file's records are which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// For each position of a record: its column.
    columns: Vec<Column>,
}

impl Layout {
    /// The layout a header row names: every name a column, none twice,
    /// the required ones present.
    pub fn from_header(names: &[&str]) -> Result<Self, RowError> {
        let mut columns = Vec::with_capacity(names.len());
        for name in names {
            let name = name.trim();
            let column = Column::parse(name)
                .ok_or_else(|| RowError::new(1, name, "is not a column of the import layout"))?;
            if columns.contains(&column) {
                return Err(RowError::new(1, name, "is named twice"));
            }
            columns.push(column);
        }
        for required in REQUIRED {
            if !columns.contains(&required) {
                return Err(RowError::new(1, required.name(), "is a required column"));
            }
        }
        Ok(Self { columns })
    }

    /// The names, in order (kept with a job to read the rest of its file).
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name().to_owned()).collect()
    }

    /// A CSV record at `line` as a row.
    pub fn row(&self, line: u64, record: &[&str]) -> Result<Row, RowError> {
        if record.len() != self.columns.len() {
            return Err(RowError::new(
                line,
                "row",
                format!(
                    "has {} fields; the header has {}",
                    record.len(),
                    self.columns.len()
                ),
            ));
        }
        let mut row = Row::new(line);
        for (column, value) in self.columns.iter().zip(record) {
            row.set(*column, value)?;
        }
        Ok(row)
    }
}

/// One line of a JSON-lines file as a row: an object whose keys are column
/// names and values strings, integers or null.
pub fn json_row(line: u64, text: &str) -> Result<Row, RowError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| RowError::new(line, "row", format!("is not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| RowError::new(line, "row", "must be a JSON object"))?;
    let mut row = Row::new(line);
    for (name, value) in object {
        let column = Column::parse(name)
            .ok_or_else(|| RowError::new(line, name, "is not a column of the import layout"))?;
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => {
                return Err(RowError::new(
                    line,
                    name,
                    "must be a string, an integer or null",
                ))
            }
        };
        row.set(column, &text)?;
    }
    for required in REQUIRED {
        if row.get(required).is_empty() {
            return Err(RowError::new(line, required.name(), "is required"));
        }
    }
    Ok(row)
}

/// One variant's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    cells: [String; COLUMNS.len()],
}

impl Row {
    fn new(line: u64) -> Self {
        Self {
            line,
            cells: Default::default(),
        }
    }

    fn set(&mut self, column: Column, value: &str) -> Result<(), RowError> {
        if value.len() > CELL_MAX_BYTES {
            return Err(RowError::new(
                self.line,
                column.name(),
                format!("is longer than {CELL_MAX_BYTES} bytes"),
            ));
        }
        self.cells[column.index()] = value.trim().to_owned();
        Ok(())
    }

    pub fn get(&self, column: Column) -> &str {
        &self.cells[column.index()]
    }

    pub fn handle(&self) -> &str {
        self.get(Column::Handle)
    }
}

/// A product as its rows describe it: the product (status left out unless
/// a row names one) and the line of each variant, in order.
#[derive(Debug, Clone)]
pub struct Planned {
    pub status: Option<ProductStatus>,
    pub product: NewProduct,
    pub lines: Vec<u64>,
}

/// Reads a product's rows (one handle, consecutive, at least one) into
/// the product they describe, checked by every rule a product meets; each
/// error names the row and column at fault. A row without an error of its
/// own fails with its product.
pub fn plan(rows: &[Row], low_stock_threshold_max: u64) -> Result<Planned, Vec<RowError>> {
    let Some(first) = rows.first() else {
        return Err(Vec::new());
    };
    let mut errors = Vec::new();
    for row in &rows[1..] {
        for column in PRODUCT_COLUMNS {
            let value = row.get(column);
            if !value.is_empty() && value != first.get(column) {
                errors.push(RowError::new(
                    row.line,
                    column.name(),
                    format!(
                        "differs from the product's first row (line {}); leave it empty",
                        first.line
                    ),
                ));
            }
        }
    }
    let status = match first.get(Column::Status) {
        "" => None,
        "active" => Some(ProductStatus::Active),
        "draft" => Some(ProductStatus::Draft),
        "archived" => Some(ProductStatus::Archived),
        _ => {
            errors.push(RowError::new(
                first.line,
                "status",
                "must be active, draft or archived",
            ));
            None
        }
    };
    let images = images(first).unwrap_or_else(|e| {
        errors.push(e);
        Vec::new()
    });
    let attributes = pairs(first, Column::Attributes).unwrap_or_else(|e| {
        errors.push(e);
        BTreeMap::new()
    });
    let options = axes(first).unwrap_or_else(|e| {
        errors.push(e);
        Vec::new()
    });
    let mut skus = Vec::with_capacity(rows.len());
    for row in rows {
        match variant(row) {
            Ok(sku) => skus.push(sku),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(with_product_failure(rows, errors));
    }
    let product = NewProduct {
        status: status.unwrap_or(ProductStatus::Active),
        title: first.get(Column::Title).to_owned(),
        description: first.get(Column::Description).to_owned(),
        brand: first.get(Column::Brand).to_owned(),
        category: first.get(Column::Category).to_owned(),
        attributes,
        images,
        options,
        skus,
    };
    if let Err(invalid) = product.clone().validate(low_stock_threshold_max) {
        let errors = invalid
            .iter()
            .flat_map(|e| located(rows, &product, e, low_stock_threshold_max))
            .collect();
        return Err(with_product_failure(rows, errors));
    }
    Ok(Planned {
        status,
        product,
        lines: rows.iter().map(|r| r.line).collect(),
    })
}

/// The rows a validation error belongs to: a variant's error to each row
/// whose variant alone fails it, a product's to its first row.
fn located(
    rows: &[Row],
    product: &NewProduct,
    error: &InvalidField,
    low_stock_threshold_max: u64,
) -> Vec<RowError> {
    let column = match column_of(&error.field) {
        // One check covers amount and currency; name the column at fault.
        "price" if error.reason.starts_with("currency") => "currency",
        column => column,
    };
    if !error.field.starts_with("skus[]") {
        return vec![RowError::new(rows[0].line, column, error.reason.clone())];
    }
    let alone: Vec<RowError> = rows
        .iter()
        .zip(&product.skus)
        .filter(|(_, sku)| {
            let mut single = product.clone();
            single.skus = vec![(*sku).clone()];
            single
                .validate(low_stock_threshold_max)
                .err()
                .is_some_and(|errors| errors.iter().any(|e| e.field == error.field))
        })
        .map(|(row, _)| RowError::new(row.line, column, error.reason.clone()))
        .collect();
    if alone.is_empty() {
        // Only the variants together break the rule (two alike, too many).
        rows.iter()
            .map(|row| RowError::new(row.line, column, error.reason.clone()))
            .collect()
    } else {
        alone
    }
}

/// The column a product validation field comes from.
fn column_of(field: &str) -> &'static str {
    match field {
        "skus[].price" => "price",
        "skus[].compare_at" => "compare_at",
        "skus[].attributes" => "sku_attributes",
        "skus[].options" => "option_values",
        "skus[].low_stock_threshold" => "low_stock_threshold",
        f if f.starts_with("skus") => "sku",
        "title" => "title",
        "description" => "description",
        "brand" => "brand",
        "category" => "category",
        "status" => "status",
        f if f.starts_with("images") => "images",
        f if f.starts_with("attributes") => "attributes",
        f if f.starts_with("options") => "options",
        "skus" => "sku",
        _ => "row",
    }
}

/// Every row of a failed product gets an error: its own, or one saying
/// its product failed.
fn with_product_failure(rows: &[Row], mut errors: Vec<RowError>) -> Vec<RowError> {
    let first_bad = errors.iter().map(|e| e.line).min().unwrap_or(rows[0].line);
    for row in rows {
        if !errors.iter().any(|e| e.line == row.line) {
            errors.push(RowError::new(
                row.line,
                "row",
                format!(
                    "its product ({}) has an error on line {first_bad}",
                    row.handle()
                ),
            ));
        }
    }
    errors.sort_by_key(|e| e.line);
    errors
}

fn variant(row: &Row) -> Result<NewSku, Vec<RowError>> {
    let mut errors = Vec::new();
    let integer = |column: Column, errors: &mut Vec<RowError>| -> Option<i64> {
        let text = row.get(column);
        if text.is_empty() {
            return None;
        }
        match text.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(RowError::new(
                    row.line,
                    column.name(),
                    "must be an integer (minor units)",
                ));
                None
            }
        }
    };
    let price = integer(Column::Price, &mut errors);
    if row.get(Column::Price).is_empty() {
        errors.push(RowError::new(row.line, "price", "is required"));
    }
    if row.get(Column::Sku).is_empty() {
        errors.push(RowError::new(row.line, "sku", "is required"));
    }
    if row.get(Column::Currency).is_empty() {
        errors.push(RowError::new(row.line, "currency", "is required"));
    }
    let compare_at = integer(Column::CompareAt, &mut errors);
    let threshold = match row.get(Column::LowStockThreshold) {
        "" => None,
        text => match text.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(RowError::new(
                    row.line,
                    "low_stock_threshold",
                    "must be a whole number of units",
                ));
                None
            }
        },
    };
    let attributes = pairs(row, Column::SkuAttributes).unwrap_or_else(|e| {
        errors.push(e);
        BTreeMap::new()
    });
    let options = match row.get(Column::OptionValues) {
        "" => Vec::new(),
        text => text.split(';').map(|v| v.trim().to_owned()).collect(),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NewSku {
        code: row.get(Column::Sku).to_owned(),
        price_amount: price.unwrap_or(0),
        price_currency: row.get(Column::Currency).to_owned(),
        compare_at,
        options,
        attributes,
        low_stock_threshold: threshold,
    })
}

/// `name=value;name=value`.
fn pairs(row: &Row, column: Column) -> Result<BTreeMap<String, String>, RowError> {
    let mut map = BTreeMap::new();
    let text = row.get(column);
    if text.is_empty() {
        return Ok(map);
    }
    for pair in text.split(';') {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            RowError::new(
                row.line,
                column.name(),
                "must be name=value pairs separated by ;",
            )
        })?;
        if map
            .insert(name.trim().to_owned(), value.trim().to_owned())
            .is_some()
        {
            return Err(RowError::new(
                row.line,
                column.name(),
                format!("names {} twice", name.trim()),
            ));
        }
    }
    Ok(map)
}

/// `URL` or `URL|alt`, `;`-separated.
fn images(row: &Row) -> Result<Vec<Image>, RowError> {
    let text = row.get(Column::Images);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text
        .split(';')
        .map(|entry| {
            let (url, alt) = entry.split_once('|').unwrap_or((entry, ""));
            Image {
                url: url.trim().to_owned(),
                alt: alt.trim().to_owned(),
            }
        })
        .collect())
}

/// `name=v1|v2;name2=v3|v4`.
fn axes(row: &Row) -> Result<Vec<OptionAxis>, RowError> {
    let text = row.get(Column::Options);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(';')
        .map(|axis| {
            let (name, values) = axis.split_once('=').ok_or_else(|| {
                RowError::new(
                    row.line,
                    "options",
                    "must be name=value|value axes separated by ;",
                )
            })?;
            Ok(OptionAxis {
                name: name.trim().to_owned(),
                values: values.split('|').map(|v| v.trim().to_owned()).collect(),
            })
        })
        .collect()
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, waiting for its turn.
    Queued,
    Running,
    /// Every row read and answered.
    Completed,
    /// The file could not be read on (a bad header, a broken file).
    Failed,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed)
    }
}

/// Rows and products by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
}

/// What became of one product of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Failed,
}

impl Tally {
    /// Counts `n` rows (or one product) with `outcome`.
    pub fn add(&mut self, outcome: Outcome, n: u64) {
        self.read += n;
        match outcome {
            Outcome::Created => self.created += n,
            Outcome::Updated => self.updated += n,
            Outcome::Unchanged => self.unchanged += n,
            Outcome::Failed => self.failed += n,
        }
    }
}

/// An import job as kept: who asked, where its file is read up to, and
/// what the rows before that became. `offset` and `line` always point at
/// the first row of a product: everything before them has taken effect
/// (durably) and is counted; a resumed job reads on from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportJob {
    pub id: u128,
    /// The store's id and owner key.
    pub tenant_id: u128,
    pub tenant: String,
    /// The audit actor who uploaded the file (`user:…`).
    pub by: String,
    pub format: ImportFormat,
    pub state: JobState,
    pub bytes: u64,
    pub created_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// The CSV header's column names, once read.
    pub header: Vec<String>,
    /// Byte offset and 1-based line of the next product's first row.
    pub offset: u64,
    pub line: u64,
    pub rows: Tally,
    pub products: Tally,
    /// Row errors recorded (at most the configured number are kept).
    pub errors: u64,
    /// Why the job failed, when it did.
    pub failure: Option<String>,
    /// How many times it was resumed after a restart.
    pub resumed: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_rows(text: &str) -> Vec<Row> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let layout = Layout::from_header(&header).unwrap();
        lines
            .enumerate()
            .map(|(i, line)| {
                let record: Vec<&str> = line.split(',').collect();
                layout.row(i as u64 + 2, &record).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_header_names_known_columns_once_with_the_required_ones() {
        assert!(Layout::from_header(&["handle", "sku", "price", "currency"]).is_ok());
        let unknown = Layout::from_header(&["handle", "sku", "price", "currency", "colour"]);
        assert_eq!(unknown.unwrap_err().field, "colour");
        let twice = Layout::from_header(&["handle", "sku", "sku", "price", "currency"]);
        assert_eq!(twice.unwrap_err().reason, "is named twice");
        let missing = Layout::from_header(&["handle", "sku", "price"]);
        assert_eq!(missing.unwrap_err().field, "currency");
        let layout = Layout::from_header(&["handle", "sku", "price", "currency"]).unwrap();
        assert_eq!(layout.row(7, &["h", "s"]).unwrap_err().line, 7);
    }

    #[test]
    fn rows_of_one_handle_make_one_product_with_its_variants() {
        let rows = csv_rows(
            "handle,title,category,options,attributes,sku,price,currency,option_values,sku_attributes\n\
             tee,Tee,12,size=S|M,material=cotton;fit=slim,TEE-S,1500,EUR,S,colour=red\n\
             tee,,,,,TEE-M,1600,EUR,M,",
        );
        let planned = plan(&rows, 1_000).unwrap();
        assert_eq!(planned.status, None);
        assert_eq!(planned.lines, vec![2, 3]);
        let p = &planned.product;
        assert_eq!((p.title.as_str(), p.category.as_str()), ("Tee", "12"));
        assert_eq!(p.attributes.len(), 2);
        assert_eq!(p.options[0].values, vec!["S", "M"]);
        assert_eq!(p.skus[1].code, "TEE-M");
        assert_eq!(p.skus[1].price_amount, 1600);
        assert_eq!(p.skus[0].attributes["colour"], "red");
    }

    #[test]
    fn each_bad_row_is_named_with_its_column_and_its_product_fails_whole() {
        let rows = csv_rows(
            "handle,title,sku,price,currency\n\
             cap,Cap,CAP-1,12x,EUR\n\
             cap,,CAP-2,100,EUR\n\
             cap,Other,CAP-3,100,EUR",
        );
        let errors = plan(&rows, 1_000).unwrap_err();
        let at = |line: u64| errors.iter().find(|e| e.line == line).unwrap();
        assert_eq!(at(2).field, "price");
        assert_eq!(at(3).field, "row");
        assert!(at(3).reason.contains("line 2"), "{:?}", at(3));
        assert_eq!(at(4).field, "title");
        // A rule the product checks, pinned to the variant that breaks it.
        let rows = csv_rows(
            "handle,title,sku,price,currency\n\
             mug,Mug,MUG-1,100,EUR\n\
             mug,,MUG-2,100,euro",
        );
        let errors = plan(&rows, 1_000).unwrap_err();
        assert_eq!(
            errors.iter().find(|e| e.line == 3).unwrap().field,
            "currency"
        );
        assert_eq!(errors.iter().find(|e| e.line == 2).unwrap().field, "row");
        let untitled = csv_rows("handle,title,sku,price,currency\nx,,X-1,100,EUR");
        assert_eq!(plan(&untitled, 1_000).unwrap_err()[0].field, "title");
    }

    #[test]
    fn json_lines_use_the_same_names() {
        let row = json_row(
            4,
            r#"{"handle":"h","title":"Hat","sku":"H-1","price":900,"currency":"EUR","compare_at":null}"#,
        )
        .unwrap();
        assert_eq!(row.get(Column::Price), "900");
        assert_eq!(plan(&[row], 10).unwrap().product.skus[0].price_amount, 900);
        assert_eq!(json_row(5, "[1]").unwrap_err().field, "row");
        assert_eq!(
            json_row(5, r#"{"handle":"h","colour":"red"}"#)
                .unwrap_err()
                .field,
            "colour"
        );
        assert_eq!(
            json_row(
                5,
                r#"{"handle":"h","sku":"a","price":1.5,"currency":"EUR"}"#
            )
            .unwrap_err()
            .field,
            "price"
        );
        assert_eq!(
            json_row(5, r#"{"handle":"h","sku":"a","currency":"EUR"}"#)
                .unwrap_err()
                .field,
            "price"
        );
    }

    #[test]
    fn a_tally_counts_each_outcome_once() {
        let mut tally = Tally::default();
        tally.add(Outcome::Created, 2);
        tally.add(Outcome::Failed, 1);
        tally.add(Outcome::Unchanged, 3);
        assert_eq!(
            (tally.read, tally.created, tally.failed, tally.unchanged),
            (6, 2, 1, 3)
        );
    }
}
