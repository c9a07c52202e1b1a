//! The wire protocol's decoders: any bytes from a node (replies) or from an operator
//! (requests and data frames) decode, wait for more, or are an error; never panic.
#![no_main]

use director_proto::{decode, decode_inbound, encode, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((reply, used))) = decode::<Reply>(rest) {
        // What decodes encodes again.
        assert!(encode(&reply).is_ok());
        rest = &rest[used..];
    }
    let mut rest = data;
    while let Ok(Some((_, used))) = decode_inbound(rest) {
        rest = &rest[used..];
    }
});
