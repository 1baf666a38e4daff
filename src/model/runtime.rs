//! Finding and loading the ONNX Runtime shared library (ort's `load-dynamic`), once per process.
//!
//! Lookup order: the config's `station.onnxruntime_path`, the `ORT_DYLIB_PATH` environment variable, then the
//! project-local `.local/lib/libonnxruntime.so` that `scripts/setup.sh` installs (searched in the current folder,
//! above the executable, and in the source tree this binary was built from). A missing or wrong library is a
//! clear error that says what to do, never ort's panic.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::environment::Environment;
use ort::logging::LogLevel;

const LOCAL_LIB: &str = ".local/lib/libonnxruntime.so";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked for {looked}). Install it with `bash scripts/setup.sh`, or point \
         ORT_DYLIB_PATH or station.onnxruntime_path at libonnxruntime.so.1.31.x"
    )]
    NotFound { looked: String },
    #[error("ONNX Runtime library {path} from {origin} does not exist")]
    Missing { path: String, origin: &'static str },
    #[error(
        "cannot load ONNX Runtime from {path}: {detail} (this station needs ONNX Runtime 1.31; run `bash scripts/setup.sh`)"
    )]
    Load { path: String, detail: String },
}

/// Where the ONNX Runtime library is, by the lookup order above.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = configured {
        return exists(path, "station.onnxruntime_path");
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return exists(Path::new(&path), "ORT_DYLIB_PATH");
    }
    let mut candidates = vec![PathBuf::from(LOCAL_LIB)];
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(|dir| dir.join(LOCAL_LIB)));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(LOCAL_LIB));
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| RuntimeError::NotFound {
            looked: format!("station.onnxruntime_path, ORT_DYLIB_PATH, {LOCAL_LIB} here and above the executable"),
        })
}

fn exists(path: &Path, origin: &'static str) -> Result<PathBuf, RuntimeError> {
    if path.exists() {
        Ok(path.to_path_buf())
    } else {
        Err(RuntimeError::Missing {
            path: path.display().to_string(),
            origin,
        })
    }
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// The process's ONNX Runtime environment, loading the library on first use.
pub fn environment(configured: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    // One builder at a time: a second environment built concurrently and then dropped frees the logger that
    // ONNX Runtime's global environment still calls (a crash when two lines start at once, as tests do).
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = locate(configured)?;
    let load_err = |detail: String| RuntimeError::Load {
        path: path.display().to_string(),
        detail,
    };
    let builder = ort::init_from(&path).map_err(|e| load_err(e.to_string()))?;
    // ONNX Runtime's own messages go to our log. Its run errors are already reported, with the part, as
    // `model_error`s, so they are logged at debug level only; fatal ones stay errors.
    let logger: ort::logging::LoggerFunction =
        Arc::new(|level, _category, _id, _location, message| match level {
            LogLevel::Fatal => tracing::error!(target: "onnxruntime", "{message}"),
            LogLevel::Error | LogLevel::Warning => {
                tracing::debug!(target: "onnxruntime", "{message}")
            }
            LogLevel::Info | LogLevel::Verbose => {
                tracing::trace!(target: "onnxruntime", "{message}")
            }
        });
    let env = builder
        .with_name("station")
        .with_telemetry(false)
        .with_logger(logger)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}
