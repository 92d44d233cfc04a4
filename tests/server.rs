//! Runs the end-to-end server tests (tests/server/test_server.py, written
//! with the official `openai` Python package) against this build's
//! `qllama serve`. Skipped, saying so, only when python3 or the `openai`
//! package is missing (`pip install openai`).

use std::path::Path;
use std::process::Command;

#[test]
fn openai_client_against_qllama_serve() {
    let have_openai =
        Command::new("python3").args(["-c", "import openai"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !have_openai {
        assert!(
            std::env::var_os("QLLAMA_REQUIRE_SERVER_TESTS").is_none(),
            "QLLAMA_REQUIRE_SERVER_TESTS is set but python3 cannot import openai"
        );
        eprintln!("SKIPPED: the server tests need python3 with the `openai` package (pip install openai)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("python3")
        .arg(root.join("tests/server/test_server.py"))
        .env("QLLAMA_BIN", env!("CARGO_BIN_EXE_qllama"))
        .current_dir(root)
        .status()
        .expect("cannot run python3");
    assert!(status.success(), "tests/server/test_server.py failed (its output is above)");
}
