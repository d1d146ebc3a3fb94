#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x0x_proto::fuzzing::presence_record_decode(data));
