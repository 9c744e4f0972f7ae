//! labctl's binary: everything is in the library (src/lib.rs), so tests and fuzz targets build
//! the same code the binary runs.

fn main() {
    std::process::exit(labctl::run());
}
