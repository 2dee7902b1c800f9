//! Bulk import: a file of 100,000 rows with 1% bad ones creates every good
//! row's product once and reports every bad row with its line and column;
//! the same file again changes nothing; an edited file updates what
//! changed; JSON lines work alike; bad uploads are refused and jobs are
//! their store's alone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::Value;

use crate::helpers::{bearer, send, send_raw, spawn_config, test_config, TestApp};

pub(crate) const HEADER: &str = "handle,title,category,sku,price,currency,sku_attributes";

/// `rows` variant rows, one product each; every hundredth row (the 38th of
/// each hundred) is bad in one of five ways. Answers the file and each bad
/// row's line with the column it must be reported on.
pub(crate) fn catalog_file(rows: usize, prefix: &str) -> (String, BTreeMap<u64, &'static str>) {
    let mut text = String::with_capacity(rows * 64);
    text.push_str(HEADER);
    text.push('\n');
    let mut bad = BTreeMap::new();
    for i in 0..rows {
        let line = i as u64 + 2;
        let (mut title, mut sku, mut price, mut attributes) = (
            format!("Item {i}"),
            format!("{prefix}-{i}"),
            (100 + i % 9_000).to_string(),
            "size=M".to_owned(),
        );
        if i % 100 == 37 {
            let column = match (i / 100) % 5 {
                0 => {
                    price = "12x".into();
                    "price"
                }
                1 => {
                    price = "-5".into();
                    "price"
                }
                2 => {
                    title = String::new();
                    "title"
                }
                3 => {
                    attributes = "broken".into();
                    "sku_attributes"
                }
                _ => {
                    sku = format!("{prefix} {i}!");
                    "sku"
                }
            };
            bad.insert(line, column);
        }
        text.push_str(&format!("h{i},{title},,{sku},{price},EUR,{attributes}\n"));
    }
    (text, bad)
}

pub(crate) async fn upload(
    http: &awc::Client,
    base: &str,
    token: &str,
    content_type: &str,
    body: String,
) -> crate::helpers::Response {
    send_raw(
        http.post(format!("{base}/v1/products/import"))
            .insert_header(bearer(token)),
        content_type,
        body,
    )
    .await
}

/// The job once it has finished (at most three minutes).
pub(crate) async fn finished(http: &awc::Client, base: &str, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let job = send(
            http.get(format!("{base}/v1/imports/{id}"))
                .insert_header(bearer(token)),
            None,
        )
        .await;
        assert_eq!(job.status, StatusCode::OK, "{:?}", job.body);
        if matches!(job.body["state"].as_str(), Some("completed" | "failed")) {
            return job.body;
        }
        assert!(
            Instant::now() < deadline,
            "the import never finished: {:?}",
            job.body
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every kept row error of a job: line → column.
pub(crate) async fn row_errors(
    http: &awc::Client,
    base: &str,
    token: &str,
    id: &str,
) -> BTreeMap<u64, String> {
    let mut errors = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(a) => format!("?errors_limit=1000&errors_after={a}"),
            None => "?errors_limit=1000".to_owned(),
        };
        let page = send(
            http.get(format!("{base}/v1/imports/{id}{query}"))
                .insert_header(bearer(token)),
            None,
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for e in page.body["errors"].as_array().unwrap() {
            assert!(!e["reason"].as_str().unwrap().is_empty(), "{e:?}");
            let fresh = errors.insert(
                e["line"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
            );
            assert!(fresh.is_none(), "line listed twice: {e:?}");
        }
        match page.body["errors_next_cursor"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return errors,
        }
    }
}

fn expected(bad: &BTreeMap<u64, &'static str>) -> BTreeMap<u64, String> {
    bad.iter().map(|(l, c)| (*l, (*c).to_owned())).collect()
}

async fn store_products(app: &TestApp, store: &str) -> u64 {
    let creator = app.get_as(&format!("/v1/creators/{store}"), None).await;
    assert_eq!(creator.status, StatusCode::OK, "{:?}", creator.body);
    creator.body["products"].as_u64().unwrap()
}

#[actix_web::test]
async fn a_hundred_thousand_rows_import_once_with_every_bad_row_reported_and_again_change_nothing()
{
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.tenants.default_max_products = 200_000;
    let app = spawn_config(config, None).await;
    let seller = app.seller("importer").await;
    let token = seller.access_token.clone();
    let store = seller.tenant_id.clone().unwrap();
    let (file, bad) = catalog_file(100_000, "IMP");
    assert_eq!(bad.len(), 1_000);

    let started = upload(&app.client, &app.base, &token, "text/csv", file.clone()).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        started.header("location"),
        Some(format!("/v1/imports/{id}").as_str())
    );
    let job = finished(&app.client, &app.base, &token, &id).await;
    assert_eq!(job["state"], "completed", "{job:?}");
    assert_eq!(job["rows"]["read"], 100_000);
    assert_eq!(job["rows"]["created"], 99_000);
    assert_eq!(job["rows"]["failed"], 1_000);
    assert_eq!(job["products"]["created"], 99_000);
    assert_eq!(job["errors_total"], 1_000);
    assert_eq!(job["next_line"], 100_002, "every line read");
    assert_eq!(
        row_errors(&app.client, &app.base, &token, &id).await,
        expected(&bad),
        "every bad row, by line and column"
    );
    assert_eq!(store_products(&app, &store).await, 99_000);
    assert_eq!(app.stock("IMP-1").await["available"], 0);
    let skipped = app.get_as("/v1/skus/IMP-37/stock", None).await;
    assert_eq!(skipped.status, StatusCode::NOT_FOUND);

    // The same file again: nothing changes, no version is made.
    let again = upload(&app.client, &app.base, &token, "text/csv", file.clone()).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again.body);
    let again_id = again.body["id"].as_str().unwrap().to_owned();
    let job = finished(&app.client, &app.base, &token, &again_id).await;
    assert_eq!(
        (
            &job["rows"]["unchanged"],
            &job["rows"]["created"],
            &job["rows"]["updated"],
            &job["rows"]["failed"]
        ),
        (
            &Value::from(99_000),
            &Value::from(0),
            &Value::from(0),
            &Value::from(1_000)
        ),
        "{job:?}"
    );
    assert_eq!(store_products(&app, &store).await, 99_000);
    let listed = app
        .get_as(&format!("/v1/products?store={store}&limit=5"), None)
        .await;
    for item in listed.body["items"].as_array().unwrap() {
        assert_eq!(item["version"], 1, "{item:?}");
    }

    // An edited file: the changed rows update their products, as the next version.
    let edited = format!("{HEADER}\nh1,Item 1,,IMP-1,777,EUR,size=M\nh2,Item two,,IMP-2,102,EUR,size=M\nh3,Item 3,,IMP-3,103,EUR,size=M\n");
    let job = upload(&app.client, &app.base, &token, "text/csv", edited).await;
    let job = finished(
        &app.client,
        &app.base,
        &token,
        job.body["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        (&job["rows"]["updated"], &job["rows"]["unchanged"]),
        (&Value::from(2), &Value::from(1)),
        "{job:?}"
    );
    let priced = app
        .get_as(
            &format!("/v1/products?store={store}&sort=price&min_price=777&max_price=777&limit=100"),
            None,
        )
        .await;
    let item_1 = priced.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["title"] == "Item 1")
        .unwrap_or_else(|| panic!("{:?}", priced.body));
    assert_eq!(item_1["version"], 2);
    app.stop().await;
}

#[actix_web::test]
async fn json_lines_import_alike_and_bad_uploads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.catalog.import_max_bytes = 4_096;
    let app = spawn_config(config, None).await;
    let token = app.seller("lines").await.access_token;
    let lines = [
        r#"{"handle":"tee","title":"Tee","options":"size=S|M","sku":"JL-S","price":1500,"currency":"EUR","option_values":"S"}"#,
        r#"{"handle":"tee","sku":"JL-M","price":1600,"currency":"EUR","option_values":"M"}"#,
        r#"{"handle":"cap","title":"Cap","sku":"JL-CAP","price":"x","currency":"EUR"}"#,
        "",
        r#"not json"#,
    ]
    .join("\n");
    let started = upload(
        &app.client,
        &app.base,
        &token,
        "application/x-ndjson",
        lines,
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();
    let job = finished(&app.client, &app.base, &token, &id).await;
    assert_eq!(job["format"], "json_lines");
    assert_eq!(
        (&job["rows"]["created"], &job["rows"]["failed"]),
        (&Value::from(2), &Value::from(2)),
        "{job:?}"
    );
    assert_eq!(job["products"]["created"], 1);
    let errors = row_errors(&app.client, &app.base, &token, &id).await;
    assert_eq!(
        errors,
        [(3, "price".to_owned()), (5, "row".to_owned())].into()
    );
    let tee = app.stock("JL-M").await;
    assert_eq!(tee["sku"], "JL-M");

    // A bad header is refused before a job is made, and says why.
    let header = upload(
        &app.client,
        &app.base,
        &token,
        "text/csv",
        "handle,sku,price,currency,colour\nx,X-1,1,EUR,red\n".into(),
    )
    .await;
    assert_eq!(
        header.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        header.body
    );
    assert_eq!(
        header.body["errors"][0]["field"], "header.colour",
        "{:?}",
        header.body
    );
    let missing = upload(&app.client, &app.base, &token, "text/csv", "{}".into()).await;
    assert_eq!(
        missing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        missing.body
    );
    assert_eq!(
        app.get_as("/v1/skus/X-1/stock", None).await.status,
        StatusCode::NOT_FOUND
    );

    for (content_type, body, status) in [
        (
            "application/json",
            "{}".to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("text/csv", String::new(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "text/csv",
            format!("{HEADER}\n{}", "h,T,,S-1,1,EUR,\n".repeat(400)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let refused = upload(&app.client, &app.base, &token, content_type, body).await;
        assert_eq!(refused.status, status, "{content_type}: {:?}", refused.body);
    }
    let shopper = app.buyer("shopper").await.access_token;
    let forbidden = upload(
        &app.client,
        &app.base,
        &shopper,
        "text/csv",
        format!("{HEADER}\n"),
    )
    .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let peek = app
        .get_as(&format!("/v1/imports/{id}"), Some(&shopper))
        .await;
    assert_eq!(peek.status, StatusCode::FORBIDDEN);
    let other = app.seller("other-store").await.access_token;
    let peek = app.get_as(&format!("/v1/imports/{id}"), Some(&other)).await;
    assert_eq!(
        (peek.status, peek.code()),
        (StatusCode::NOT_FOUND, "import_not_found")
    );
    let unknown = app
        .get_as(
            "/v1/imports/0190a1b2-0000-7000-8000-00000000000c",
            Some(&token),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad_query = app
        .get_as(&format!("/v1/imports/{id}?errors_limit=0"), Some(&token))
        .await;
    assert_eq!(bad_query.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The upload is audited.
    let audit = app
        .get_as(
            "/v1/admin/audit?action=product.import&limit=10",
            Some(&token),
        )
        .await;
    assert!(
        audit.body.to_string().contains(&format!("import:{id}")),
        "{:?}",
        audit.body
    );

    // Refused uploads left no file, and neither does a client that goes
    // away mid-upload; the finished job's file went with it.
    let spool = dir.path().join("imports");
    assert_eq!(spooled(&spool), Vec::<String>::new());
    abandon_upload(&app, &token, &spool).await;
    let emptied = crate::helpers::eventually(Duration::from_secs(10), || async {
        spooled(&spool).is_empty().then_some(())
    })
    .await;
    assert!(emptied.is_some(), "left behind: {:?}", spooled(&spool));

    // An upload a crash cut off (its file, no job) goes at the next start.
    let identities = app.identities();
    app.stop().await;
    let orphan = spool.join(format!("{:032x}.upload", 0x0190_a1b2_u128 << 96));
    std::fs::write(&orphan, format!("{HEADER}\n")).unwrap();
    let mut config = test_config(dir.path());
    config.catalog.import_max_bytes = 4_096;
    let app = spawn_config(config, Some(dir)).await;
    app.adopt(identities);
    assert!(!orphan.exists(), "the orphan was removed at start-up");
    app.stop().await;
}

/// The names of the files spooled in `dir`.
fn spooled(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Starts an upload of a declared 4,000 bytes, sends a few hundred, waits
/// until the server spools them into `spool`, and hangs up.
async fn abandon_upload(app: &TestApp, token: &str, spool: &std::path::Path) {
    use tokio::io::AsyncWriteExt;
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/products/import HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/csv\r\nContent-Length: 4000\r\n\r\n{HEADER}\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all("h,T,,S-1,1,EUR,\n".repeat(20).as_bytes())
        .await
        .unwrap();
    stream.flush().await.unwrap();
    // The server has started spooling before the client goes.
    let spool = spool.to_path_buf();
    let started = crate::helpers::eventually(Duration::from_secs(10), || async {
        (!spooled(&spool).is_empty()).then_some(())
    })
    .await;
    assert!(started.is_some(), "the upload was never spooled");
    drop(stream);
}

/// A finished job is kept for `retention.import_jobs_s`, then forgotten
/// with its row errors; a job of the same store made later stays.
#[actix_web::test]
async fn finished_jobs_are_forgotten_after_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.retention.import_jobs_s = 600;
    config.retention.sweep_interval_s = 1;
    let clock = flashdrop::clock::ManualClock::new(1_800_000_000_000);
    let app =
        crate::helpers::spawn_clocked(config, Some(dir), std::sync::Arc::new(clock.clone())).await;
    let token = app.seller("kept").await.access_token;
    let file = |sku: &str| format!("{HEADER}\nh,T,,{sku},100,EUR,\nbad,T,,{sku}-X,1x,EUR,\n");
    let run = |body: String| {
        let (client, base, token) = (app.client.clone(), app.base.clone(), token.clone());
        async move {
            let started = upload(&client, &base, &token, "text/csv", body).await;
            assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
            let id = started.body["id"].as_str().unwrap().to_owned();
            finished(&client, &base, &token, &id).await;
            id
        }
    };
    let old = run(file("RET-1")).await;
    clock.advance_ms(300_000);
    let newer = run(file("RET-2")).await;
    let errors = row_errors(&app.client, &app.base, &token, &old).await;
    assert_eq!(errors.len(), 1, "{errors:?}");

    // The first job finished 10 minutes ago, the second 5 (within the
    // access token's life, so the seller's token still works).
    clock.advance_ms(300_001);
    let gone = crate::helpers::eventually(Duration::from_secs(10), || async {
        let job = app
            .get_as(&format!("/v1/imports/{old}"), Some(&token))
            .await;
        (job.status == StatusCode::NOT_FOUND).then_some(job)
    })
    .await
    .expect("the old job is forgotten");
    assert_eq!(gone.code(), "import_not_found");
    let kept = app
        .get_as(&format!("/v1/imports/{newer}"), Some(&token))
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{:?}", kept.body);
    assert_eq!(
        app.stock("RET-1").await["sku"],
        "RET-1",
        "its products stay"
    );
    app.stop().await;
}
