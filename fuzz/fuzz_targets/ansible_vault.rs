#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labctl_fuzz::fuzzing::ansible_vault(data));
