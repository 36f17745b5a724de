// The schema's migrations are embedded by `sqlx::migrate!`, which cannot tell cargo to watch
// their folder: a migration added or changed must rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
