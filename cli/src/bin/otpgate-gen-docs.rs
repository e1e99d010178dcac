//! Regenerates the shell completions and man pages:
//! `cargo run -p otpgate --bin otpgate-gen-docs -- packaging`
//! (run from the repository root; the argument defaults to `packaging`).

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "packaging".into());
    match otpgate::docs::generate(&dir) {
        Ok(files) => {
            for f in files {
                println!("{}", dir.join(f).display());
            }
        }
        Err(e) => {
            eprintln!("otpgate-gen-docs: cannot write into {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
}
