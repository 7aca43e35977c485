//! Compiles the contract in `auth/` and `blog/` with a vendored `protoc`, so a fresh
//! machine needs nothing installed by hand.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let include = protoc_bin_vendored::include_path()?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("pair_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                PathBuf::from("auth/v1/auth.proto"),
                PathBuf::from("blog/v1/blog.proto"),
            ],
            &[PathBuf::from("."), include],
        )?;
    println!("cargo:rerun-if-changed=auth/v1/auth.proto");
    println!("cargo:rerun-if-changed=blog/v1/blog.proto");
    Ok(())
}
