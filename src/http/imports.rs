//! Bulk import over HTTP: `POST /v1/products/import` streams the file to
//! the spool (never the whole file in memory, refused past
//! `catalog.import_max_bytes`) and answers 202 with the job; `GET
//! /v1/imports/{id}` shows its progress and row errors. The layout and the
//! rules are `domain::import`, the job runner `services::imports`.

use std::io::Write;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339_ms;
use crate::domain::identity::id_text;
use crate::domain::import::{ImportFormat, ImportJob, JobState, RowError, Tally};
use crate::domain::{policy, InvalidField, TenantId};
use crate::services::identity::{actor_of_caller, AuditDraft};

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{Authenticated, Correlation, Live, Seller};
use super::input::{numeric_cursor, Query};
use super::products::author_of;

/// Bytes gathered before each write to the spool file.
const WRITE_CHUNK: usize = 1 << 20;
/// Row errors in one answer: the default and the largest.
const ERRORS_PAGE: usize = 100;
const ERRORS_PAGE_MAX: usize = 1_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct TallyBody {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
}

impl From<Tally> for TallyBody {
    fn from(t: Tally) -> Self {
        Self {
            read: t.read,
            created: t.created,
            updated: t.updated,
            unchanged: t.unchanged,
            failed: t.failed,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RowErrorBody {
    /// The file's line (a CSV record's first line; line 1 is the header).
    pub line: u64,
    /// The column at fault, or `row`.
    pub field: String,
    pub reason: String,
}

impl From<RowError> for RowErrorBody {
    fn from(e: RowError) -> Self {
        Self {
            line: e.line,
            field: e.field,
            reason: e.reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportBody {
    pub id: String,
    pub store_id: String,
    /// `queued`, `running`, `completed` or `failed`.
    pub state: String,
    /// `csv` or `json_lines`.
    pub format: String,
    pub bytes: u64,
    /// Rows by what became of them (`read` = the others' sum).
    pub rows: TallyBody,
    /// Products (a product is its consecutive rows of one handle).
    pub products: TallyBody,
    /// Row errors counted; the first `catalog.import_errors_kept` are listed.
    pub errors_total: u64,
    /// A page of row errors by line (`errors_after`, `errors_limit`).
    pub errors: Vec<RowErrorBody>,
    /// `errors_after` for the next page of errors; `null` at the end.
    pub errors_next_cursor: Option<String>,
    /// The next line to read (every row before it took effect).
    pub next_line: u64,
    /// Why a failed job stopped.
    pub failure: Option<String>,
    /// Times the job resumed after a restart.
    pub resumed: u32,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl ImportBody {
    fn new(job: &ImportJob, errors: Vec<RowError>, limit: usize) -> Self {
        let errors_next_cursor = (errors.len() == limit)
            .then(|| errors.last().map(|e| e.line.to_string()))
            .flatten();
        Self {
            id: id_text(job.id),
            store_id: id_text(job.tenant_id),
            state: match job.state {
                JobState::Queued => "queued",
                JobState::Running => "running",
                JobState::Completed => "completed",
                JobState::Failed => "failed",
            }
            .to_owned(),
            format: match job.format {
                ImportFormat::Csv => "csv",
                ImportFormat::JsonLines => "json_lines",
            }
            .to_owned(),
            bytes: job.bytes,
            rows: job.rows.into(),
            products: job.products.into(),
            errors_total: job.errors,
            errors: errors.into_iter().map(Into::into).collect(),
            errors_next_cursor,
            next_line: job.line,
            failure: job.failure.clone(),
            resumed: job.resumed,
            created_at: rfc3339_ms(job.created_at_ms),
            started_at: job.started_at_ms.map(rfc3339_ms),
            finished_at: job.finished_at_ms.map(rfc3339_ms),
        }
    }
}

/// The format a `Content-Type` names.
fn format_of(req: &HttpRequest) -> Result<ImportFormat, ApiError> {
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match media.as_str() {
        "text/csv" => Ok(ImportFormat::Csv),
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            Ok(ImportFormat::JsonLines)
        }
        _ => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "an import is text/csv or application/x-ndjson (JSON lines)",
        )),
    }
}

/// Import products from a file (CSV or JSON lines), as a job.
#[utoipa::path(
    post, path = "/v1/products/import", tag = "products",
    security(("bearer" = [])),
    request_body(
        description = "CSV with a header row (`text/csv`) or JSON lines (`application/x-ndjson`), one row per variant; see the README's layout",
        content((String = "text/csv"), (String = "application/x-ndjson")),
    ),
    responses(
        (status = 202, description = "the job, queued; `Location` is its address", body = ImportBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a store's seller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "imports_busy: the store has as many jobs unfinished as allowed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: past catalog.import_max_bytes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_media_type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "an empty file, or a CSV header that is not the import layout's (`header.<column>`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn import_products(
    req: HttpRequest,
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let format = format_of(&req)?;
    let imports = engine.0.imports();
    let max = imports.settings().max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(crate::services::ImportError::TooLarge(max).into());
    }
    let upload = imports.reserve(seller.tenant)?;
    let (id, path) = (upload.id, upload.path.clone());
    let spool = path.clone();
    let written = async {
        let mut file = Some(
            std::fs::File::create(&spool).map_err(|e| storage("creating the import file", &e))?,
        );
        let mut buffer = Vec::with_capacity(WRITE_CHUNK);
        let mut bytes = 0u64;
        loop {
            let chunk = body.next().await;
            let last = chunk.is_none();
            if let Some(chunk) = chunk {
                let chunk = chunk.map_err(|_| {
                    ApiError::new(ErrorKind::MalformedJson, "the body could not be read")
                })?;
                bytes += chunk.len() as u64;
                if bytes > max {
                    return Err(crate::services::ImportError::TooLarge(max).into());
                }
                buffer.extend_from_slice(&chunk);
            }
            if buffer.len() >= WRITE_CHUNK || last {
                let mut f = file.take().expect("the file is put back after each write");
                let data = std::mem::take(&mut buffer);
                let (f, done) = web::block(move || {
                    let done =
                        f.write_all(&data)
                            .and_then(|()| if last { f.sync_all() } else { Ok(()) });
                    (f, done)
                })
                .await
                .map_err(|_| {
                    ApiError::new(ErrorKind::Unavailable, "the import file was not written")
                })?;
                done.map_err(|e| storage("writing the import file", &e))?;
                file = Some(f);
            }
            if last {
                return Ok(bytes);
            }
        }
    }
    .await;
    let bytes = match written {
        Ok(0) => Err(InvalidField::new("body", "the file is empty").into()),
        other => other,
    };
    let bytes = match bytes {
        Ok(bytes) => {
            let (checker, spooled) = (imports.clone(), path.clone());
            web::block(move || checker.check_header(format, &spooled))
                .await
                .map_err(|_| ApiError::new(ErrorKind::Unavailable, "the import file was not read"))
                .and_then(|checked| checked.map_err(ApiError::from))
                .map(|()| bytes)
        }
        error => error,
    };
    // On an error the upload, dropped, takes its file with it.
    let bytes = bytes?;
    let by = author_of(&seller);
    let job = imports
        .start(upload, seller.tenant, &by, format, bytes)
        .await?;
    engine
        .0
        .directory()
        .audit(vec![AuditDraft::new(
            Some(actor_of_caller(&seller.caller)),
            "product.import",
            format!("import:{}", id_text(id)),
        )
        .tenant(Some(seller.tenant))
        .after(serde_json::json!({"format": format_name(format), "bytes": bytes}).to_string())
        .correlation(correlation.0)])
        .await?;
    let body = ImportBody::new(&job, Vec::new(), ERRORS_PAGE);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/imports/{}", body.id)))
        .json(body))
}

fn format_name(format: ImportFormat) -> &'static str {
    match format {
        ImportFormat::Csv => "csv",
        ImportFormat::JsonLines => "json_lines",
    }
}

fn storage(what: &str, error: &std::io::Error) -> ApiError {
    tracing::error!(%error, "{what}");
    ApiError::new(
        ErrorKind::Unavailable,
        "the import file could not be stored",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    pub errors_after: Option<String>,
    pub errors_limit: Option<usize>,
}

/// An import job's progress and row errors (its store's sellers and
/// platform admins).
#[utoipa::path(
    get, path = "/v1/imports/{id}", tag = "products",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "the job's id"),
        ("errors_after" = Option<String>, Query, nullable = false, pattern = "^[0-9]{1,19}$", description = "errors after this line (errors_next_cursor of the previous answer)"),
        ("errors_limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 1000, description = "row errors in this answer, 1..=1000, default 100"),
    ),
    responses(
        (status = 200, body = ImportBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "a shopper", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "import_not_found: no such job, or another store's", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_import(
    caller: Authenticated,
    engine: Live,
    path: web::Path<String>,
    query: Query<ImportQuery>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(ErrorKind::ImportNotFound, "no such import job");
    let who = caller.0.principal();
    if !who.is_platform_admin() && who.selling_for().is_none() {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "import jobs are for their store's sellers and platform admins",
        ));
    }
    let id = uuid::Uuid::parse_str(&path)
        .map_err(|_| not_found())?
        .as_u128();
    let after = numeric_cursor(query.errors_after.as_deref())
        .map_err(|_| InvalidField::new("errors_after", "must be a line number"))?
        .unwrap_or(0);
    let limit = match query.errors_limit {
        None => ERRORS_PAGE,
        Some(n) if (1..=ERRORS_PAGE_MAX).contains(&n) => n,
        Some(_) => {
            return Err(
                InvalidField::new("errors_limit", format!("must be 1..={ERRORS_PAGE_MAX}")).into(),
            )
        }
    };
    let imports = engine.0.imports();
    let job = imports.job(id, None)?;
    if !policy::sees_store(&who, TenantId(job.tenant_id)) {
        return Err(not_found());
    }
    let errors = imports.errors(id, after, limit)?;
    Ok(HttpResponse::Ok().json(ImportBody::new(&job, errors, limit)))
}
