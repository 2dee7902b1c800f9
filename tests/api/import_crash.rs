//! An import of 100,000 rows killed with SIGKILL while it runs: after the
//! restart the job resumes from its last kept position by itself, every
//! good row's product exists exactly once, the job's counts are exact, and
//! importing the file again changes nothing.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::Value;

use crate::crash::{open_store, start_with, wait_ready};
use crate::helpers::{bearer, client, send};
use crate::imports::{catalog_file, finished, row_errors, upload};

const ENV: &[(&str, &str)] = &[
    ("FLASHDROP__TENANTS__DEFAULT_MAX_PRODUCTS", "200000"),
    // Small batches: many kept positions, so the kill lands between two.
    ("FLASHDROP__CATALOG__IMPORT_BATCH_PRODUCTS", "64"),
];

#[actix_web::test]
async fn an_import_killed_midway_resumes_and_takes_every_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let mut server = start_with(dir.path(), 0, ENV);
    wait_ready(&http, &server.base).await;
    let token = open_store(&http, &server.base).await;
    let (file, bad) = catalog_file(100_000, "KIL");
    let started = upload(&http, &server.base, &token, "text/csv", file.clone()).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();

    // Kill it once some rows took effect and many are left.
    let deadline = Instant::now() + Duration::from_secs(120);
    let read_at_kill = loop {
        let job = send(
            http.get(format!("{}/v1/imports/{id}", server.base))
                .insert_header(bearer(&token)),
            None,
        )
        .await;
        let read = job.body["rows"]["read"].as_u64().unwrap_or(0);
        assert_ne!(
            job.body["state"], "completed",
            "finished before the kill; {:?}",
            job.body
        );
        if read >= 5_000 {
            break read;
        }
        assert!(Instant::now() < deadline, "no progress: {:?}", job.body);
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let mut server = start_with(dir.path(), 1, ENV);
    wait_ready(&http, &server.base).await;
    let job = finished(&http, &server.base, &token, &id).await;
    assert_eq!(job["state"], "completed", "{job:?}");
    assert_eq!(job["resumed"], 1);
    let counts = |job: &Value, what: &str| job["rows"][what].as_u64().unwrap();
    assert_eq!(counts(&job, "read"), 100_000, "{job:?}");
    assert_eq!(
        counts(&job, "created"),
        99_000,
        "rows before the kill are counted once: {job:?}"
    );
    assert_eq!(counts(&job, "failed"), 1_000);
    assert_eq!(
        counts(&job, "unchanged") + counts(&job, "updated"),
        0,
        "{job:?}"
    );
    let errors = row_errors(&http, &server.base, &token, &id).await;
    assert_eq!(errors.len(), 1_000);
    assert!(errors.keys().all(|line| bad.contains_key(line)));
    let store = send(
        http.get(format!("{}/v1/auth/me", server.base))
            .insert_header(bearer(&token)),
        None,
    )
    .await;
    let store_id = store.body["tenant_id"].as_str().unwrap().to_owned();
    let creator = send(
        http.get(format!("{}/v1/creators/{store_id}", server.base)),
        None,
    )
    .await;
    assert_eq!(
        creator.body["products"], 99_000,
        "no product twice, none lost"
    );

    // The file again: nothing to do.
    let again = upload(&http, &server.base, &token, "text/csv", file).await;
    let job = finished(
        &http,
        &server.base,
        &token,
        again.body["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(counts(&job, "unchanged"), 99_000, "{job:?}");
    assert_eq!(counts(&job, "created"), 0);
    eprintln!("import crash test: killed after {read_at_kill} rows read; resumed and completed");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
