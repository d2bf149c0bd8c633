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

impl DeviceSpec {
    /// Opens the device. `tf32` lets CUDA's f32 matrix products round their
    /// inputs to TF32 (tensor cores; about 10 mantissa bits), a speed-for-precision
    /// trade that the CPU path ignores.
    pub fn open(self, tf32: bool) -> Result<Device> {
        match self {
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
                candle_core::cuda::set_gemm_reduced_precision_f32(tf32);
                Ok(device)
            }
        }
    }
}

/// Parses and opens a `--device` value in one step.
pub fn open_device(spec: &str, tf32: bool) -> Result<Device> {
    spec.parse::<DeviceSpec>()?.open(tf32)
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
    fn cuda_without_the_feature_says_how_to_get_it() {
        if CUDA_COMPILED {
            return;
        }
        let e = open_device("cuda:0", false).unwrap_err().to_string();
        assert!(e.contains("built without CUDA") && e.contains("--features cuda"), "{e}");
        assert!(open_device("cpu", false).unwrap().is_cpu());
    }
}
