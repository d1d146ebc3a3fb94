#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x0x_proto::fuzzing::store_snapshot_decode(data));
