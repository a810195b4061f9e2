//! `nightmare-monkey`: everything lives in the library; see `lib.rs`.

fn main() -> std::process::ExitCode {
    nightmare_monkey::main()
}
