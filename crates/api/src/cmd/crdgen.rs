//! Writes the generated CRDs into each directory given on the command line.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        return Err("usage: crdgen <dir>...".into());
    }
    for (file, yaml) in wib_api::crd::all()? {
        for dir in &dirs {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(file), &yaml)?;
        }
    }
    Ok(())
}
