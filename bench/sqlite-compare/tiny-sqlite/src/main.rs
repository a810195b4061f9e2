fn main() {
    let conn = rusqlite::Connection::open_in_memory().expect("open");
    let v: String = conn
        .query_row("select sqlite_version()", [], |r| r.get(0))
        .expect("query");
    println!("sqlite3 version {v} (rusqlite::version() = {})", rusqlite::version());
}
