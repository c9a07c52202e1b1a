//! Catalog loading: any bytes as a catalog file (director's, Directord's or an Ansible
//! inventory, INI or YAML) must load or give an input error; never panic, never hang.
#![no_main]

use director::api::{ansible, Catalog, Document};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz.yaml");
    let doc = if ansible::looks_like_ini(text) {
        match ansible::ini_to_tree(path, text) {
            Ok(tree) => Document::synthetic("fuzz.ini", tree),
            Err(e) => return assert_eq!(e.code, 2),
        }
    } else {
        match Document::parse(path, text.to_string()) {
            Ok(doc) => doc,
            Err(e) => return assert_eq!(e.code, 2),
        }
    };
    if let Err(e) = Catalog::from_documents(vec![doc]) {
        assert_eq!(e.code, 2, "{e}");
    }
});
