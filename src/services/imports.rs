//! Import jobs: a seller's file, spooled to disk when uploaded, is read by
//! one runner on a thread of its own, product by product (`domain::import`
//! says how rows become products), in batches whose products are created or
//! replaced concurrently so their WAL records share group commits. After
//! each batch the job's position (the first row of the next product) and
//! counts are filed behind the batch's records, so a restart resumes a job
//! exactly where its last kept position says, and the rows read again take
//! effect once: a product they made already is found by its SKU codes,
//! unchanged, and counted as this job's by its version's correlation id.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::domain::import::{
    json_row, plan, ImportFormat, ImportJob, JobState, Layout, Outcome, Planned, Row, RowError,
    Tally,
};
use crate::domain::product::{EditLimits, Product, SKUS_PER_PRODUCT_MAX};
use crate::domain::{SkuCode, TenantId, TenantKey};
use crate::persistence::versions::RECOVERED;
use crate::persistence::{ImportJobs, StoreError, WalHandle, WalOp};

use super::catalog::{Author, Catalog, CatalogError};

/// Bounds and pace of imports (`[catalog]`).
#[derive(Debug, Clone, Copy)]
pub struct ImportSettings {
    /// A file is at most this many bytes.
    pub max_bytes: u64,
    /// Row errors kept per job (all are counted).
    pub errors_kept: u64,
    /// Products created or replaced at once, and between two kept positions.
    pub batch_products: usize,
    /// Jobs of one store queued or running at once.
    pub unfinished_per_store: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("no such import")]
    NotFound,
    #[error("the store has {0} imports queued or running; wait for one to finish")]
    Busy(usize),
    #[error("the file is larger than {0} bytes (catalog.import_max_bytes)")]
    TooLarge(u64),
    #[error("the header names no import layout: {} {}", .0.field, .0.reason)]
    BadHeader(RowError),
    #[error("the engine cannot serve this request now")]
    Unavailable,
}

impl From<StoreError> for ImportError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "import storage");
        ImportError::Unavailable
    }
}

/// What the imports are built from.
pub struct ImportDeps {
    pub catalog: Arc<Catalog>,
    /// A store's product quota (its plan's `max_products`).
    pub quota: Arc<dyn Fn(TenantId) -> u32 + Send + Sync>,
    pub jobs: ImportJobs,
    pub wal: WalHandle,
    pub clock: Arc<dyn Clock>,
    pub limits: EditLimits,
    pub settings: ImportSettings,
}

pub struct Imports {
    deps: ImportDeps,
    /// Jobs queued or running, as they are now (fresher than the kept state).
    live: Mutex<HashMap<u128, ImportJob>>,
    /// Uploads being received, per store: counted with its unfinished jobs.
    uploads: Uploads,
    queue: mpsc::UnboundedSender<u128>,
}

/// Uploads under way per store (tenant id → count). A store's unfinished
/// jobs include them, so two uploads at once cannot both pass
/// `unfinished_per_store`. Lock order: this map, then `Imports::live`.
#[derive(Debug, Default, Clone)]
struct Uploads(Arc<Mutex<HashMap<u128, usize>>>);

impl Uploads {
    /// One more upload of `tenant` when it and the store's `jobs()` stay
    /// within `max`; `Err` with how many are unfinished otherwise.
    fn take(&self, tenant: u128, max: usize, jobs: impl FnOnce() -> usize) -> Result<(), usize> {
        let mut uploads = self.0.lock();
        let open = jobs() + uploads.get(&tenant).copied().unwrap_or(0);
        if open >= max {
            return Err(open);
        }
        *uploads.entry(tenant).or_insert(0) += 1;
        Ok(())
    }

    /// `tenant`'s upload ended (as a job made under the lock, or not at all).
    fn give_back(&self, tenant: u128, then: impl FnOnce()) {
        let mut uploads = self.0.lock();
        then();
        if let Some(n) = uploads.get_mut(&tenant) {
            *n -= 1;
            if *n == 0 {
                uploads.remove(&tenant);
            }
        }
    }
}

/// A store's place for one upload, with the job id and file it is for;
/// given back when dropped unless `Imports::start` made a job of it.
#[derive(Debug)]
pub struct Upload {
    pub id: u128,
    pub path: std::path::PathBuf,
    tenant: u128,
    uploads: Option<Uploads>,
    /// Whether its file is a job's now (from the moment `start` keeps it).
    handed_over: bool,
}

/// An upload that never became a job (refused, failed, or its request
/// dropped mid-way by a client that went away) takes its file with it.
impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(uploads) = self.uploads.take() {
            uploads.give_back(self.tenant, || {});
        }
        if !self.handed_over {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(%error, path = %self.path.display(), "an abandoned import file was not removed")
                }
            }
        }
    }
}

/// What reading a file gives: a row, or a row that is not one, with the
/// byte offset it starts at.
enum Item {
    Row(Box<Row>, u64),
    Bad(RowError, u64),
}

impl Imports {
    /// The service, with the jobs a restart interrupted queued again; the
    /// runner reads what `start` queues.
    pub fn new(
        deps: ImportDeps,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<u128>), ImportError> {
        let (queue, rx) = mpsc::unbounded_channel();
        let imports = Arc::new(Self {
            deps,
            live: Mutex::new(HashMap::new()),
            uploads: Uploads::default(),
            queue,
        });
        let unfinished = imports.deps.jobs.unfinished()?;
        let keep: std::collections::HashSet<u128> = unfinished.iter().map(|j| j.id).collect();
        let orphans = imports.deps.jobs.remove_orphans(&keep)?;
        if orphans > 0 {
            tracing::info!(
                orphans,
                "removed import files of uploads that never became jobs"
            );
        }
        for mut job in unfinished {
            job.resumed += 1;
            job.state = JobState::Queued;
            tracing::info!(job = %uuid::Uuid::from_u128(job.id), line = job.line, "resuming an import");
            let id = job.id;
            imports.live.lock().insert(id, job);
            let _ = imports.queue.send(id);
        }
        Ok((imports, rx))
    }

    pub fn settings(&self) -> ImportSettings {
        self.deps.settings
    }

    /// A place for an upload of `tenant`: the new job's id and where its
    /// file goes; refused when the store's unfinished jobs and uploads
    /// under way reach `catalog.imports_per_store`.
    pub fn reserve(&self, tenant: TenantId) -> Result<Upload, ImportError> {
        let jobs = || {
            self.live
                .lock()
                .values()
                .filter(|j| j.tenant_id == tenant.0)
                .count()
        };
        self.uploads
            .take(tenant.0, self.deps.settings.unfinished_per_store, jobs)
            .map_err(ImportError::Busy)?;
        let id = uuid::Uuid::now_v7().as_u128();
        Ok(Upload {
            id,
            path: self.deps.jobs.file_of(id),
            tenant: tenant.0,
            uploads: Some(self.uploads.clone()),
            handed_over: false,
        })
    }

    /// Refuses a spooled CSV file whose header is not one of the import
    /// layout (unknown, repeated or missing columns) before any job is
    /// made of it; JSON lines have no header.
    pub fn check_header(
        &self,
        format: ImportFormat,
        path: &std::path::Path,
    ) -> Result<(), ImportError> {
        if format != ImportFormat::Csv {
            return Ok(());
        }
        let file = std::fs::File::open(path).map_err(|error| {
            tracing::error!(%error, "reading an import file");
            ImportError::Unavailable
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 12, file));
        read_header(&mut reader)
            .map(drop)
            .map_err(ImportError::BadHeader)
    }

    /// Queues `upload`'s job for its spooled file of `bytes` (already durable);
    /// answers once the job itself is kept.
    pub async fn start(
        &self,
        mut upload: Upload,
        tenant: TenantId,
        by: &str,
        format: ImportFormat,
        bytes: u64,
    ) -> Result<ImportJob, ImportError> {
        let id = upload.id;
        let job = ImportJob {
            id,
            tenant_id: tenant.0,
            tenant: TenantKey::of_store(tenant).as_str().to_owned(),
            by: by.to_owned(),
            format,
            state: JobState::Queued,
            bytes,
            created_at_ms: self.deps.clock.now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
            header: Vec::new(),
            offset: 0,
            line: 1,
            rows: Tally::default(),
            products: Tally::default(),
            errors: 0,
            failure: None,
            resumed: 0,
        };
        // From here the file is the job's: were this request dropped while
        // the job is being kept, a kept job resumes with it at the next
        // start, and a job that was not kept leaves an orphan that start
        // removes.
        upload.handed_over = true;
        self.keep(&job, Vec::new()).await?;
        // The upload becomes the job under the uploads' lock: counted once.
        if let Some(uploads) = upload.uploads.take() {
            uploads.give_back(tenant.0, || {
                self.live.lock().insert(id, job.clone());
            });
        }
        self.queue.send(id).map_err(|_| ImportError::Unavailable)?;
        metrics::counter!("flashdrop_imports_started_total").increment(1);
        Ok(job)
    }

    /// Forgets up to `max` jobs that finished more than `keep_ms` ago, with
    /// their row errors (`retention.import_jobs_s`); answers how many went.
    pub fn purge_finished(&self, keep_ms: u64, max: usize) -> Result<usize, ImportError> {
        let cutoff = self.deps.clock.now_ms().saturating_sub(keep_ms);
        let purged = self.deps.jobs.purge_finished(cutoff, max)?;
        metrics::counter!("flashdrop_import_jobs_purged_total").increment(purged as u64);
        Ok(purged)
    }

    /// A job as it is now, if it belongs to `tenant` (any store's for `None`).
    pub fn job(&self, id: u128, tenant: Option<TenantId>) -> Result<ImportJob, ImportError> {
        let live = self.live.lock().get(&id).cloned();
        let job = match live {
            Some(job) => job,
            None => self.deps.jobs.get(id)?.ok_or(ImportError::NotFound)?,
        };
        if tenant.is_some_and(|t| t.0 != job.tenant_id) {
            return Err(ImportError::NotFound);
        }
        Ok(job)
    }

    /// A job's kept row errors after line `after`, at most `limit`.
    pub fn errors(&self, id: u128, after: u64, limit: usize) -> Result<Vec<RowError>, ImportError> {
        Ok(self.deps.jobs.errors(id, after, limit)?)
    }

    /// Files `job` with `errors` behind everything sent before, and waits
    /// until it is durable.
    async fn keep(&self, job: &ImportJob, errors: Vec<RowError>) -> Result<(), ImportError> {
        let filing = self
            .deps
            .jobs
            .filing(job, errors, self.deps.settings.errors_kept)?;
        let (tx, rx) = oneshot::channel();
        self.deps
            .wal
            .send(filing)
            .and_then(|()| {
                self.deps.wal.send(WalOp::Fence {
                    ack: Box::new(move || {
                        let _ = tx.send(());
                    }),
                })
            })
            .map_err(|_| ImportError::Unavailable)?;
        rx.await.map_err(|_| ImportError::Unavailable)
    }

    /// Runs the queued jobs one after another, until the service is gone.
    pub async fn run(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<u128>) {
        let weak = Arc::downgrade(&self);
        drop(self);
        while let Some(id) = queue.recv().await {
            let Some(imports) = weak.upgrade() else { break };
            let Some(job) = imports.live.lock().get(&id).cloned() else {
                continue;
            };
            match imports.run_job(job).await {
                Ok(job) => {
                    metrics::counter!("flashdrop_imports_finished_total", "state" => if job.state == JobState::Completed { "completed" } else { "failed" }).increment(1);
                    imports.live.lock().remove(&id);
                    let _ = std::fs::remove_file(imports.deps.jobs.file_of(id));
                }
                Err(error) => {
                    // The engine is stopping or its storage failed: the job
                    // stays unfinished and resumes at the next start.
                    tracing::warn!(%error, job = %uuid::Uuid::from_u128(id), "import stopped");
                }
            }
        }
    }

    async fn run_job(&self, mut job: ImportJob) -> Result<ImportJob, ImportError> {
        job.state = JobState::Running;
        job.started_at_ms.get_or_insert(self.deps.clock.now_ms());
        self.publish(&job);
        let file = match std::fs::File::open(self.deps.jobs.file_of(job.id)) {
            Ok(file) => file,
            Err(error) => {
                return self
                    .fail(job, format!("the uploaded file is gone: {error}"))
                    .await
            }
        };
        let mut rows = match RowReader::open(file, &mut job) {
            Ok(rows) => rows,
            Err(failure) => {
                let errors = failure.iter().cloned().collect::<Vec<_>>();
                job.errors += errors.len() as u64;
                let reason = failure
                    .map(|e| format!("line {}: {}: {}", e.line, e.field, e.reason))
                    .unwrap_or_else(|| "the file could not be read".into());
                job.state = JobState::Failed;
                job.failure = Some(reason);
                job.finished_at_ms = Some(self.deps.clock.now_ms());
                self.keep(&job, errors).await?;
                return Ok(job);
            }
        };
        let correlation = format!("import-{}", uuid::Uuid::from_u128(job.id));
        let mut batch: Vec<Vec<Row>> = Vec::new();
        let mut bad: Vec<RowError> = Vec::new();
        let mut group: Vec<Row> = Vec::new();
        loop {
            let next = match rows.next() {
                Ok(next) => next,
                Err(reason) => return self.fail(job, reason).await,
            };
            let ends_group = match &next {
                Some(Item::Row(row, _)) => {
                    group.first().is_some_and(|g| g.handle() != row.handle())
                }
                Some(Item::Bad(..)) => !group.is_empty(),
                None => true,
            };
            if ends_group && !group.is_empty() {
                batch.push(std::mem::take(&mut group));
            }
            let at = match &next {
                Some(Item::Row(row, offset)) => (*offset, row.line),
                Some(Item::Bad(error, offset)) => (*offset, error.line),
                None => (rows.end_offset(), rows.end_line()),
            };
            // A batch is applied whole at a product's end, or at the file's.
            let full = ends_group && batch.len() >= self.deps.settings.batch_products;
            if full || next.is_none() {
                self.apply(
                    &mut job,
                    std::mem::take(&mut batch),
                    std::mem::take(&mut bad),
                    at,
                    &correlation,
                )
                .await?;
            }
            match next {
                None => break,
                Some(Item::Row(row, _)) => {
                    if group.len() > SKUS_PER_PRODUCT_MAX {
                        // Past any product's bound: refused without being kept.
                        bad.push(RowError::new(
                            row.line,
                            "handle",
                            format!("a product has at most {SKUS_PER_PRODUCT_MAX} variants"),
                        ));
                        job.rows.add(Outcome::Failed, 1);
                    } else {
                        group.push(*row);
                    }
                }
                Some(Item::Bad(error, _)) => {
                    bad.push(error);
                    job.rows.add(Outcome::Failed, 1);
                }
            }
        }
        job.state = JobState::Completed;
        job.finished_at_ms = Some(self.deps.clock.now_ms());
        self.keep(&job, Vec::new()).await?;
        self.publish(&job);
        Ok(job)
    }

    /// Applies a batch of products, then keeps the job at `next` (the
    /// first row after the batch) with the batch's errors.
    async fn apply(
        &self,
        job: &mut ImportJob,
        batch: Vec<Vec<Row>>,
        mut errors: Vec<RowError>,
        next: (u64, u64),
        correlation: &str,
    ) -> Result<(), ImportError> {
        let tenant_id = TenantId(job.tenant_id);
        let tenant = TenantKey::of_store(tenant_id);
        // A resumed job, since when it first started.
        let resumed_since = (job.resumed > 0).then(|| job.started_at_ms.unwrap_or(0));
        let by = job.by.clone();
        let mut pending: FuturesUnordered<_> = batch
            .into_iter()
            .map(|rows| {
                let (tenant, by) = (&tenant, &by);
                async move {
                    let n = rows.len() as u64;
                    let outcome = match plan(&rows, self.deps.limits.low_stock_threshold_max) {
                        Ok(planned) => {
                            self.put(tenant, tenant_id, planned, by, correlation, resumed_since)
                                .await
                        }
                        Err(errors) => Ok((Outcome::Failed, errors)),
                    };
                    (n, outcome)
                }
            })
            .collect();
        let mut stop = None;
        while let Some((n, outcome)) = pending.next().await {
            match outcome {
                Ok((outcome, mut row_errors)) => {
                    job.rows.add(outcome, n);
                    job.products.add(outcome, 1);
                    errors.append(&mut row_errors);
                    metrics::counter!("flashdrop_import_rows_total").increment(n);
                }
                Err(error) => stop = Some(error),
            }
        }
        drop(pending);
        if let Some(error) = stop {
            return Err(error);
        }
        errors.sort_by_key(|e| e.line);
        job.errors += errors.len() as u64;
        (job.offset, job.line) = next;
        self.keep(job, errors).await?;
        self.publish(job);
        Ok(())
    }

    /// Creates or replaces one product; a failure of the engine (not of
    /// the rows) stops the job.
    async fn put(
        &self,
        tenant: &TenantKey,
        tenant_id: TenantId,
        planned: Planned,
        by: &str,
        correlation: &str,
        resumed_since: Option<u64>,
    ) -> Result<(Outcome, Vec<RowError>), ImportError> {
        let row_errors = |field: &str, reason: String| -> Vec<RowError> {
            planned
                .lines
                .iter()
                .map(|&line| RowError::new(line, field, reason.clone()))
                .collect()
        };
        let catalog = &self.deps.catalog;
        let mut owners: Vec<Arc<Product>> = Vec::new();
        for (sku, &line) in planned.product.skus.iter().zip(&planned.lines) {
            let Ok(code) = SkuCode::parse(&sku.code) else {
                continue;
            };
            if let Some(owner) = catalog.product_of_code(&code) {
                if owner.tenant != tenant.as_str() {
                    let mut errors =
                        row_errors("row", format!("its product has an error on line {line}"));
                    errors.retain(|e| e.line != line);
                    errors.push(RowError::new(
                        line,
                        "sku",
                        format!("{} is used by another store's product", sku.code),
                    ));
                    return Ok((Outcome::Failed, errors));
                }
                if !owners.iter().any(|o| o.id == owner.id) {
                    owners.push(owner);
                }
            }
        }
        let author = Author {
            by,
            correlation_id: correlation,
        };
        match owners.as_slice() {
            [] => {
                let valid = match planned
                    .product
                    .validate(self.deps.limits.low_stock_threshold_max)
                {
                    Ok(valid) => valid,
                    Err(invalid) => {
                        let reason = invalid
                            .iter()
                            .map(|e| format!("{}: {}", e.field, e.reason))
                            .collect::<Vec<_>>()
                            .join("; ");
                        return Ok((Outcome::Failed, row_errors("row", reason)));
                    }
                };
                match catalog
                    .create_product(tenant, valid, (self.deps.quota)(tenant_id), author)
                    .await
                {
                    Ok(_) => Ok((Outcome::Created, Vec::new())),
                    Err(error) => refused(error, &row_errors),
                }
            }
            [owner] => {
                let (status, limits, now) =
                    (planned.status, self.deps.limits, self.deps.clock.now_ms());
                let changed = catalog
                    .change_product(tenant, owner.id, None, author, |current| {
                        current.replaced(planned.product.clone(), status, limits, by, now)
                    })
                    .await;
                match changed {
                    Ok(Ok(changed)) if changed.after.version == changed.before.version => {
                        // Read again after a restart: this job's own change
                        // counts as what it was.
                        let current = &changed.after;
                        let own = resumed_since.is_some_and(|since| {
                            catalog
                                .version(owner.id, current.version)
                                .is_ok_and(|(_, v)| {
                                    v.correlation_id == correlation
                                    // Its entry was lost by the crash and filed
                                    // again at start: the version's author and
                                    // time say whose it is.
                                    || (v.correlation_id == RECOVERED
                                        && current.updated_by == by
                                        && current.updated_at_ms >= since)
                                })
                        });
                        if own {
                            let outcome = if current.version == 1 {
                                Outcome::Created
                            } else {
                                Outcome::Updated
                            };
                            return Ok((outcome, Vec::new()));
                        }
                        Ok((Outcome::Unchanged, Vec::new()))
                    }
                    Ok(Ok(_)) => Ok((Outcome::Updated, Vec::new())),
                    Ok(Err(invalid)) => {
                        let reason = invalid
                            .iter()
                            .map(|e| format!("{}: {}", e.field, e.reason))
                            .collect::<Vec<_>>()
                            .join("; ");
                        Ok((Outcome::Failed, row_errors("row", reason)))
                    }
                    Err(error) => refused(error, &row_errors),
                }
            }
            _ => Ok((
                Outcome::Failed,
                row_errors("sku", "the codes belong to more than one product".into()),
            )),
        }
    }

    async fn fail(&self, mut job: ImportJob, reason: String) -> Result<ImportJob, ImportError> {
        job.state = JobState::Failed;
        job.failure = Some(reason);
        job.finished_at_ms = Some(self.deps.clock.now_ms());
        self.keep(&job, Vec::new()).await?;
        self.publish(&job);
        Ok(job)
    }

    fn publish(&self, job: &ImportJob) {
        self.live.lock().insert(job.id, job.clone());
    }
}

/// A catalog refusal as the rows' errors; the engine failing stops the job.
fn refused(
    error: CatalogError,
    row_errors: &dyn Fn(&str, String) -> Vec<RowError>,
) -> Result<(Outcome, Vec<RowError>), ImportError> {
    let errors = match error {
        CatalogError::Unavailable => return Err(ImportError::Unavailable),
        CatalogError::SkuExists(codes) => row_errors(
            "sku",
            format!("in use by another product: {}", codes.join(", ")),
        ),
        CatalogError::NoSuchCategory(id) => row_errors("category", format!("no category {id}")),
        other => row_errors("row", other.to_string()),
    };
    Ok((Outcome::Failed, errors))
}

/// The layout a CSV file's first record (its header) names: the check
/// an upload gets before its job is accepted, and a job before its rows.
pub fn read_header<R: std::io::Read>(reader: &mut csv::Reader<R>) -> Result<Layout, RowError> {
    let mut header = csv::StringRecord::new();
    match reader.read_record(&mut header) {
        Ok(true) => Layout::from_header(&header.iter().collect::<Vec<_>>()),
        Ok(false) => Err(RowError::new(1, "row", "the file is empty")),
        Err(e) => Err(RowError::new(1, "row", e.to_string())),
    }
}

/// A file's rows, from a job's kept position.
struct RowReader {
    kind: Kind,
    /// Byte offset and line where reading started.
    base: (u64, u64),
}

enum Kind {
    Csv {
        reader: csv::Reader<BufReader<std::fs::File>>,
        layout: Layout,
        record: csv::StringRecord,
    },
    Lines {
        reader: BufReader<std::fs::File>,
        offset: u64,
        line: u64,
        text: String,
    },
}

impl RowReader {
    /// Opens `file` at `job`'s position; a CSV file read from its start
    /// has its header read (and kept in `job`). `Err` with the header's
    /// error, or `None` when the file cannot be read.
    fn open(mut file: std::fs::File, job: &mut ImportJob) -> Result<Self, Option<RowError>> {
        file.seek(SeekFrom::Start(job.offset)).map_err(|_| None)?;
        let base = (job.offset, job.line);
        let kind = match job.format {
            ImportFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(BufReader::with_capacity(1 << 16, file));
                // A job kept before its first product still reads its header.
                let layout = if job.offset == 0 {
                    let layout = read_header(&mut reader).map_err(Some)?;
                    job.header = layout.names();
                    layout
                } else {
                    let names: Vec<&str> = job.header.iter().map(String::as_str).collect();
                    Layout::from_header(&names).map_err(Some)?
                };
                Kind::Csv {
                    reader,
                    layout,
                    record: csv::StringRecord::new(),
                }
            }
            ImportFormat::JsonLines => Kind::Lines {
                reader: BufReader::with_capacity(1 << 16, file),
                offset: job.offset,
                line: job.line,
                text: String::new(),
            },
        };
        Ok(Self { kind, base })
    }

    /// The next row (or bad row) with the byte offset it starts at; `Err`
    /// when the file cannot be read on.
    fn next(&mut self) -> Result<Option<Item>, String> {
        let (base_offset, base_line) = self.base;
        match &mut self.kind {
            Kind::Csv {
                reader,
                layout,
                record,
            } => loop {
                let at = reader.position().clone();
                let offset = base_offset + at.byte();
                let line = base_line + at.line() - 1;
                match reader.read_record(record) {
                    Ok(false) => return Ok(None),
                    Ok(true) => {
                        if record.len() == 1 && record.get(0).is_some_and(str::is_empty) {
                            continue;
                        }
                        // Where the record itself starts (past blank lines).
                        let start = record.position().unwrap_or(&at);
                        let (offset, line) =
                            (base_offset + start.byte(), base_line + start.line() - 1);
                        let fields: Vec<&str> = record.iter().collect();
                        return Ok(Some(match layout.row(line, &fields) {
                            Ok(row) => Item::Row(Box::new(row), offset),
                            Err(error) => Item::Bad(error, offset),
                        }));
                    }
                    Err(error) => match error.kind() {
                        csv::ErrorKind::Utf8 { .. } => {
                            return Ok(Some(Item::Bad(
                                RowError::new(line, "row", "is not UTF-8"),
                                offset,
                            )))
                        }
                        _ => return Err(format!("line {line}: {error}")),
                    },
                }
            },
            Kind::Lines {
                reader,
                offset,
                line,
                text,
            } => loop {
                text.clear();
                let start = *offset;
                let this_line = *line;
                let mut bytes = Vec::new();
                let read = reader
                    .read_until(b'\n', &mut bytes)
                    .map_err(|e| format!("line {this_line}: {e}"))?;
                if read == 0 {
                    return Ok(None);
                }
                *offset += read as u64;
                *line += 1;
                match std::str::from_utf8(&bytes) {
                    Ok(s) if s.trim().is_empty() => continue,
                    Ok(s) => {
                        return Ok(Some(match json_row(this_line, s.trim()) {
                            Ok(row) => Item::Row(Box::new(row), start),
                            Err(error) => Item::Bad(error, start),
                        }))
                    }
                    Err(_) => {
                        return Ok(Some(Item::Bad(
                            RowError::new(this_line, "row", "is not UTF-8"),
                            start,
                        )))
                    }
                }
            },
        }
    }

    /// The position after the last row.
    fn end_offset(&self) -> u64 {
        match &self.kind {
            Kind::Csv { reader, .. } => self.base.0 + reader.position().byte(),
            Kind::Lines { offset, .. } => *offset,
        }
    }

    fn end_line(&self) -> u64 {
        match &self.kind {
            Kind::Csv { reader, .. } => self.base.1 + reader.position().line() - 1,
            Kind::Lines { line, .. } => *line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_under_way_count_with_a_stores_jobs_and_are_given_back() {
        let uploads = Uploads::default();
        // One job running, room for two: one upload may start, not a second.
        assert_eq!(uploads.take(7, 2, || 1), Ok(()));
        assert_eq!(uploads.take(7, 2, || 1), Err(2));
        // Another store is not held up.
        assert_eq!(uploads.take(8, 2, || 0), Ok(()));
        // The upload becomes a job: counted once, as the job.
        let mut jobs = 1;
        uploads.give_back(7, || jobs += 1);
        assert_eq!(uploads.take(7, 2, || jobs), Err(2));
        // The first job finishes: room for one upload again.
        assert_eq!(uploads.take(7, 2, || jobs - 1), Ok(()));
        uploads.give_back(7, || {});
        uploads.give_back(8, || {});
        assert!(uploads.0.lock().is_empty(), "no count is left behind");
    }

    #[test]
    fn an_upload_dropped_before_its_job_gives_its_place_back_and_takes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::default();
        uploads.take(3, 1, || 0).unwrap();
        let path = dir.path().join("one.upload");
        std::fs::write(&path, b"title\n").unwrap();
        let upload = Upload {
            id: 1,
            path: path.clone(),
            tenant: 3,
            uploads: Some(uploads.clone()),
            handed_over: false,
        };
        assert_eq!(uploads.take(3, 1, || 0), Err(1));
        drop(upload);
        assert_eq!(uploads.take(3, 1, || 0), Ok(()));
        assert!(!path.exists(), "an upload that is no job leaves no file");

        // A file handed to its job stays.
        let kept = dir.path().join("two.upload");
        std::fs::write(&kept, b"title\n").unwrap();
        drop(Upload {
            id: 2,
            path: kept.clone(),
            tenant: 3,
            uploads: None,
            handed_over: true,
        });
        assert!(kept.exists());
    }
}
