//! Orchestration loading and planning: any bytes as an orchestration file must plan or give
//! an input error (or `--exec-help`'s usage); never panic, never hang.
#![no_main]

use director::api::Orchestration;
use director::api::{Catalog, Document};
use director::api::{Plan, Selection};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::LazyLock;

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let text = "vars: {a: 1}\ngroups: {web: {}}\nnodes:\n  - {name: web1, host: 192.0.2.1, groups: [web]}\n  - {name: db1, host: 192.0.2.2}\n";
    Catalog::from_documents(vec![Document::parse(Path::new("c.yaml"), text.into()).unwrap()]).unwrap()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let orchestration = match Document::parse(Path::new("fuzz.yaml"), text.to_string()) {
        Ok(doc) => Orchestration::from_document(doc),
        Err(e) => return assert_eq!(e.code, 2),
    };
    match orchestration.and_then(|o| Plan::build(&CATALOG, &[o], &Selection::default())) {
        Ok(_) => {}
        Err(e) => assert!(e.code == 2 || e.code == 0, "{e}"),
    }
});
