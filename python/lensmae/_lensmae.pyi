"""Type stubs of the compiled module (the public API is in ``lensmae``)."""
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import pyarrow as pa

__version__: str

class LensmaeError(Exception): ...

class Model:
    def __init__(
        self,
        model: Optional[Union[str, Path]] = None,
        sr_model: Optional[Union[str, Path]] = None,
        task: str = "classify",
        device: str = "cpu",
        threads: Optional[int] = None,
        batch_size: int = 64,
        nan_policy: str = "fail",
        pixel_scale: Optional[str] = None,
        tta: str = "none",
        psf_fwhm: Optional[float] = None,
        exposure_time: Optional[float] = None,
        fit_refits: int = 2,
        psf_fwhm_col: str = "psf_fwhm",
        exposure_time_col: str = "exposure_time",
        zero_point: Optional[float] = None,
        zero_point_col: Optional[str] = None,
    ) -> None: ...
    @property
    def class_names(self) -> List[str]: ...
    @property
    def input_shape(self) -> Tuple[int, int]: ...
    def predict(
        self,
        table: Any,
        image_col: Optional[str] = None,
        id_col: Optional[str] = None,
        keep: Sequence[str] = ...,
        shape: Optional[Tuple[int, int]] = None,
        pixel_scale_col: Optional[str] = None,
        noise_col: Optional[str] = None,
    ) -> pa.Table: ...
    def predict_files(
        self,
        paths: List[Union[str, Path]],
        image_col: Optional[str] = None,
        id_col: Optional[str] = None,
        keep: Sequence[str] = ...,
        shape: Optional[Tuple[int, int]] = None,
        hdu: Optional[str] = None,
        band: Optional[str] = None,
        flag_planes: Optional[List[str]] = None,
        rms_hdu: Optional[str] = None,
        weight_hdu: Optional[str] = None,
        flag_hdu: Optional[str] = None,
        pixel_scale_col: Optional[str] = None,
        noise_col: Optional[str] = None,
    ) -> pa.Table: ...

def simulate(
    preset: str = "deeplense-model2",
    n_per_class: int = 100,
    seed: int = 1,
    task: str = "classify",
    factor: int = 4,
    config: Optional[Union[str, Path]] = None,
    classes: Optional[List[str]] = None,
    threads: Optional[int] = None,
) -> pa.Table: ...
def presets() -> List[Tuple[str, str]]: ...
def write_sr_fits(predictions: str, out: str, overwrite: bool = False) -> Tuple[int, int, int, int]: ...
