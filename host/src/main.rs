//! `nightmare-monkey`: everything lives in the library; see `lib.rs`.
#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    nightmare_monkey::main()
}
