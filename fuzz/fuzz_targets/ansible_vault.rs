#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labctl_fuzz::ansible_vault(data));
