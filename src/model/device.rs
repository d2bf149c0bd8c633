//! Where the model computes: `cpu`, `cuda` or `cuda:N`.
//!
//! CUDA needs a binary built with the `cuda` feature (bench/build-cuda.sh) and a
//! visible NVIDIA GPU; asking for it otherwise is an error that says which of the
//! two is missing, never a silent fall-back to the CPU.
use crate::{Error, Result};
use candle_core::Device;

/// Whether this binary was compiled with candle's CUDA backend.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// What `--device` names, before any device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU (all `--threads`).
    Cpu,
    /// The CUDA GPU of this ordinal.
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::config("device", format!("`{s}` is not a device; use cpu, cuda or cuda:N"));
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceSpec::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// How CUDA computes the models' matrix products (products, convolutions and
/// attention's two products; element-wise work, reductions, the optimiser and the
/// master weights stay f32 everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// IEEE f32 throughout (the default; the CPU always computes this way).
    #[default]
    F32,
    /// f32 tensors, products on TF32 tensor cores (inputs rounded to ~10
    /// mantissa bits, f32 accumulation).
    Tf32,
    /// Each product's operands cast to bf16 (8 mantissa bits, f32's range, so no
    /// loss scaling), the product accumulated in f32 and cast back to f32.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::config("precision", format!("`{s}` is not a precision; use f32, tf32 or bf16"))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        })
    }
}

// Per thread, so that a library process holding several models (Python, Dask
// workers) never has one caller's choice change another's arithmetic: the thread
// that opens a CUDA device with bf16 (the CLI's, which then trains on it) gets
// it, and any other thread chooses with [`with_bf16_products`].
thread_local! {
    static BF16_PRODUCTS_HERE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether the layers cast their matrix products' operands to bf16 on this
/// thread: set by [`DeviceSpec::open`] with [`Precision::Bf16`] on the thread
/// that opens the device, or for a closure by [`with_bf16_products`].
pub fn bf16_products() -> bool {
    BF16_PRODUCTS_HERE.with(|c| c.get()).unwrap_or(false)
}

/// Turns the layers' bf16 matrix products on or off for this thread.
pub fn set_bf16_products(on: bool) {
    BF16_PRODUCTS_HERE.with(|c| c.set(Some(on)));
}

/// Runs `f` with this thread's layers' bf16 products `on` (whatever the thread
/// chose before), then restores that choice; lets the CPU tests exercise the
/// CUDA option's code path without touching other threads.
pub fn with_bf16_products<R>(on: bool, f: impl FnOnce() -> R) -> R {
    let previous = BF16_PRODUCTS_HERE.with(|c| c.replace(Some(on)));
    let result = f();
    BF16_PRODUCTS_HERE.with(|c| c.set(previous));
    result
}

impl DeviceSpec {
    /// Opens the device with its matrix products in `precision`. Reduced
    /// precisions are CUDA options: the CPU's fused kernels compute in f32, and
    /// asking for anything else there is an error rather than a silent f32 run.
    pub fn open(self, precision: Precision) -> Result<Device> {
        match self {
            DeviceSpec::Cpu if precision != Precision::F32 => Err(Error::config(
                "precision",
                format!("`{precision}` is a CUDA option; the CPU computes in f32 (drop --precision/--tf32 or use --device cuda)"),
            )),
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(_) if !CUDA_COMPILED => Err(Error::config(
                "device",
                format!(
                    "`{self}` asked for, but this lensmae was built without CUDA; \
                     build it with `--features cuda` (bench/build-cuda.sh) or use --device cpu"
                ),
            )),
            DeviceSpec::Cuda(n) => {
                let device = Device::new_cuda(n)
                    .map_err(|e| Error::config("device", format!("`{self}` is not available on this machine: {e}")))?;
                candle_core::cuda::set_gemm_reduced_precision_f32(precision == Precision::Tf32);
                set_bf16_products(precision == Precision::Bf16);
                keep_freed_memory_pooled(&device)?;
                Ok(device)
            }
        }
    }
}

/// Makes the device's stream-ordered memory pool keep what candle frees instead
/// of returning it to the driver at every synchronisation (CUDA's default release
/// threshold is 0): otherwise each training step maps its whole working set anew,
/// which cost ~0.6 ms per 200 MB tensor on an H200 (examples/layer_times.rs),
/// more than the kernel writing it. PyTorch's caching allocator keeps memory the
/// same way. A no-op without CUDA.
fn keep_freed_memory_pooled(device: &Device) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        use candle_core::cuda_backend::cudarc::driver::{result, sys};
        let cu_device = cuda.cuda_stream().context().cu_device();
        let mut threshold = u64::MAX;
        let pool_error = |e| Error::config("device", format!("setting CUDA's memory pool: {e}"));
        // SAFETY: a device handle from the open context, and the attribute's documented type (u64).
        unsafe {
            let pool = result::device::get_mem_pool(cu_device).map_err(pool_error)?;
            let attribute = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
            result::mem_pool::set_attribute(pool, attribute, (&mut threshold as *mut u64).cast())
                .map_err(pool_error)?;
        }
    }
    let _ = device;
    Ok(())
}

/// Parses and opens a `--device` value in one step.
pub fn open_device(spec: &str, precision: Precision) -> Result<Device> {
    spec.parse::<DeviceSpec>()?.open(precision)
}

/// The precision of the matrix products on `device` as opened, for provenance.
pub fn precision_in_use(device: &Device) -> Precision {
    if device.is_cpu() {
        Precision::F32
    } else if bf16_products() {
        Precision::Bf16
    } else if candle_core::cuda::gemm_reduced_precision_f32() {
        Precision::Tf32
    } else {
        Precision::F32
    }
}

/// A short name of an opened device, for logs and provenance.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.contains("device") && e.contains("cpu, cuda or cuda:N"), "{bad}: {e}");
        }
    }

    #[test]
    fn reduced_precisions_are_parsed_and_refused_on_the_cpu() {
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("tf32".parse::<Precision>().unwrap(), Precision::Tf32);
        let e = "f16".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("precision") && e.contains("f32, tf32 or bf16"), "{e}");
        for p in [Precision::Tf32, Precision::Bf16] {
            let e = open_device("cpu", p).unwrap_err().to_string();
            assert!(e.contains("CUDA option") && e.contains(&p.to_string()), "{e}");
        }
    }

    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        if CUDA_COMPILED {
            return;
        }
        let e = open_device("cuda:0", Precision::F32).unwrap_err().to_string();
        assert!(e.contains("built without CUDA") && e.contains("--features cuda"), "{e}");
        assert!(open_device("cpu", Precision::F32).unwrap().is_cpu());
    }
}
