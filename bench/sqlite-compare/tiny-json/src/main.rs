fn main() {
    let v = serde_json::json!({"type": "intent", "id": "1767225600000-1", "ok": true});
    println!("{}", serde_json::to_string(&v).expect("json"));
}
