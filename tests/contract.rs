//! The contract check as part of the suite: `.ci/contract.py` runs
//! schemathesis (`--checks all`) against the release binary as a buyer, a
//! seller and a platform admin, and fails on any answer that `/openapi.json`
//! does not describe. Its own test binary, so it runs after the API tests and
//! has the machine to itself.
//!
//! schemathesis comes from `.ci/requirements.txt`
//! (`python3 -m pip install -r .ci/requirements.txt`). Without it the check
//! skips with a loud line, except under `CI=true`, where it fails.

use std::process::Command;

fn schemathesis_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import schemathesis"])
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn every_answer_is_one_the_openapi_document_describes() {
    if !schemathesis_installed() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but schemathesis is not installed: python3 -m pip install -r .ci/requirements.txt"
        );
        eprintln!(
            "\n!!! SKIPPED the contract check: schemathesis is not installed \
             (python3 -m pip install -r .ci/requirements.txt) !!!\n"
        );
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/contract.py");
    let status = Command::new("python3")
        .arg(script)
        .args(["--binary", env!("CARGO_BIN_EXE_flashdrop")])
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "the contract check failed; its output above names each failing case"
    );
}
