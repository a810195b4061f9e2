// Exposes the locked rusqlite version to the binary as RUSQLITE_VERSION.
fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut v = "unknown".to_owned();
    let mut in_pkg = false;
    for l in lock.lines() {
        if l == "name = \"rusqlite\"" { in_pkg = true; continue; }
        if in_pkg {
            if let Some(x) = l.strip_prefix("version = \"") { v = x.trim_end_matches('"').to_owned(); }
            break;
        }
    }
    println!("cargo:rustc-env=RUSQLITE_VERSION={v}");
}
