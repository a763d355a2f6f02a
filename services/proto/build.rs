//! Compiles `proto/fiscus/v1` with protox (no system protoc), writes the encoded descriptor set
//! for server reflection, and generates the tonic servers and clients from that same set.

use std::path::{Path, PathBuf};
use std::{env, fmt, fs, io, process};

/// The contract, relative to the proto root.
const PROTO_FILES: [&str; 5] = [
    "fiscus/v1/common.proto",
    "fiscus/v1/receipts.proto",
    "fiscus/v1/payments.proto",
    "fiscus/v1/shifts.proto",
    "fiscus/v1/tokens.proto",
];

/// What can go wrong here, each with the context a developer needs to fix it.
enum BuildError {
    Env(&'static str, env::VarError),
    ProtoRoot(PathBuf, io::Error),
    Compile(protox::Error),
    WriteDescriptor(PathBuf, io::Error),
    Generate(io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name, err) => write!(f, "environment variable {name}: {err}"),
            // protox's Debug form carries `file:line:column: message`.
            Self::ProtoRoot(path, err) => write!(f, "proto root {}: {err}", path.display()),
            Self::Compile(err) => write!(f, "compiling the fiscus.v1 protos: {err:?}"),
            Self::WriteDescriptor(path, err) => {
                write!(f, "writing the descriptor set to {}: {err}", path.display())
            }
            Self::Generate(err) => write!(f, "generating Rust code from the descriptor set: {err}"),
        }
    }
}

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err}");
        process::exit(1);
    }
}

fn run() -> Result<(), BuildError> {
    let manifest_dir = env_path("CARGO_MANIFEST_DIR")?;
    let out_dir = env_path("OUT_DIR")?;
    let proto_root = manifest_dir.join("../../proto");
    let proto_root =
        fs::canonicalize(&proto_root).map_err(|err| BuildError::ProtoRoot(proto_root, err))?;

    // A directory here makes cargo rerun on any change beneath it, new files included.
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let files: Vec<PathBuf> = PROTO_FILES
        .iter()
        .map(|file| proto_root.join(file))
        .collect();
    // Source info keeps the proto comments (Rust docs, reflection); imports make the set
    // self-contained for reflection clients such as grpcurl.
    let descriptor_set = protox::Compiler::new([&proto_root])
        .and_then(|mut compiler| {
            compiler
                .include_source_info(true)
                .include_imports(true)
                .open_files(&files)?;
            Ok(compiler.file_descriptor_set())
        })
        .map_err(BuildError::Compile)?;

    let descriptor_path = out_dir.join("fiscus_descriptor.bin");
    write_descriptor(&descriptor_path, &descriptor_set)?;

    write_mutating_impls(&out_dir.join("fiscus_mutating.rs"), &descriptor_set)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Maps encode in key order: equal requests encode to equal bytes, whatever order their
        // entries arrived in (idempotency fingerprints rely on it).
        .btree_map(".")
        // Every RPC a service does not implement answers UNIMPLEMENTED instead of failing to compile.
        .generate_default_stubs(true)
        .out_dir(&out_dir)
        .compile_fds(descriptor_set)
        .map_err(BuildError::Generate)
}

/// `impl Mutating for …` for every message with an `operation_id` string field: the requests
/// that change something, whose idempotency fingerprints leave the id out.
fn write_mutating_impls(
    path: &Path,
    descriptor_set: &protox::prost_reflect::prost_types::FileDescriptorSet,
) -> Result<(), BuildError> {
    use protox::prost_reflect::prost_types::field_descriptor_proto::Type;
    let mut code = String::new();
    for file in descriptor_set
        .file
        .iter()
        .filter(|f| f.package() == "fiscus.v1")
    {
        for message in &file.message_type {
            let mutating = message
                .field
                .iter()
                .any(|f| f.name() == "operation_id" && f.r#type() == Type::String);
            if mutating {
                code.push_str(&format!(
                    "impl crate::Mutating for crate::v1::{name} {{\n    \
                     fn operation_id_mut(&mut self) -> &mut String {{\n        \
                     &mut self.operation_id\n    }}\n}}\n",
                    name = message.name()
                ));
            }
        }
    }
    fs::write(path, code).map_err(|err| BuildError::WriteDescriptor(path.to_path_buf(), err))
}

fn env_path(name: &'static str) -> Result<PathBuf, BuildError> {
    env::var(name)
        .map(PathBuf::from)
        .map_err(|err| BuildError::Env(name, err))
}

fn write_descriptor(
    path: &Path,
    descriptor_set: &protox::prost_reflect::prost_types::FileDescriptorSet,
) -> Result<(), BuildError> {
    use protox::prost::Message as _;
    fs::write(path, descriptor_set.encode_to_vec())
        .map_err(|err| BuildError::WriteDescriptor(path.to_path_buf(), err))
}
