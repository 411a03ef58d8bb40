//! Test-only crash points. With the `fault-points` feature, a point named in
//! `SIGHTLINE_FAULT_POINT` announces itself on stdout and parks the process, so
//! a test can kill it there (SIGKILL) and check what a retry does. Release
//! builds do not have the feature, and the calls compile to nothing.

/// Parks the process forever if `name` is the configured fault point.
pub fn hit(name: &str) {
    if std::env::var("SIGHTLINE_FAULT_POINT").as_deref() == Ok(name) {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "fault point reached: {name}");
        let _ = out.flush();
        loop {
            std::thread::park();
        }
    }
}
