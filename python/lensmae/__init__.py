"""lensmae from Python: dark-matter substructure of strong gravitational lenses.

Two entry points, Arrow in and Arrow out:

- ``lensmae.load_model(...)`` loads a classifier (the bundled one by default) and
  returns a :class:`Model`; ``model.predict(table)`` takes a pyarrow Table or
  RecordBatchReader, a polars or pandas DataFrame (anything with
  ``__arrow_c_stream__``) and returns a ``pyarrow.Table`` with one row per input
  row: the same columns and values as ``lensmae predict`` writes.
- ``lensmae.simulate(...)`` renders strong lenses in-process (DeepLense recipes
  and survey-like lenses) into a ``pyarrow.Table``; image columns are
  ``arrow.fixed_shape_tensor`` (``table["image"].combine_chunks().to_numpy_ndarray()``).

``lensmae.lsdb.predict_catalog`` adds the predictions to an LSDB catalogue, lazily,
partition by partition on Dask; ``lensmae.spark.predict_dataframe`` maps a Spark
DataFrame through a model (``mapInArrow``) and ``lensmae.ray.predict_dataset`` a Ray
Dataset (``map_batches``).

The computations run in Rust with the GIL released; errors are raised as
:class:`LensmaeError` with lensmae's message (file, row or option named).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Iterable, Optional, Sequence, Tuple, Union

import pyarrow as pa

from . import _lensmae
from ._lensmae import LensmaeError, __version__

__all__ = ["Model", "load_model", "simulate", "presets", "write_sr_fits", "LensmaeError", "PREDICTION_COLUMNS",
           "__version__"]

#: What each column of a prediction table holds (``help(lensmae.Model.predict)``).
PREDICTION_COLUMNS = {
    "row": "the input row's number, from 0 (int64)",
    "<carried>": "the id column (``id`` when present, or ``id_col``), ra/dec/_healpix_29/object_id "
    "when present, and the ``keep`` columns, as given",
    "p_<class>": "the calibrated probability of each class (float32; null when the row has no prediction)",
    "pred_class": "the most probable class (string)",
    "max_prob": "its probability (float32)",
    "entropy": "entropy of the probabilities, nats (float32)",
    "ood_score": "Mahalanobis distance of the cutout's encoder features from the model's training "
    "domain (float32; null for an uncalibrated model)",
    "in_domain": "whether ood_score is within the threshold fitted on validation data, and the "
    "cutout's pixel scale, deflector, (for a min-max model) storage precision and (for a classifier of "
    "smooth-lens residuals) a fit that found a galaxy-scale lens, where the model can use them (bool)",
    "fit_chi2": "a classifier of smooth-lens residuals: chi^2 per pixel of the cutout's smooth-lens fit "
    "(float64; about 1 when the smooth lens explains the cutout to the noise)",
    "fit_core_chi2": "chi^2 of the residual's azimuthal means in 6 one-pixel annuli about the fitted "
    "deflector's light (float64; about 4 on the classifier's own lenses, 10 or less for nine in ten; a PSF "
    "with wings fitted as a Gaussian leaves most rows above 10: give psf_image or psf_moffat_beta)",
    "fit_theta_e": "the fitted Einstein radius, arcsec (float64)",
    "fit_axis_ratio": "minor/major axis ratio of the fitted SIE mass (float64)",
    "fit_position_angle": "orientation of the fitted mass's major axis, degrees counter-clockwise from the "
    "cutout's +x axis (columns) towards +y (rows as FITS stores them), in (-90, 90] (float64)",
    "fit_lens_x": "centre of the fitted mass along the cutout's x axis, arcsec from its centre (float64)",
    "fit_lens_y": "centre of the fitted mass along the cutout's y axis, arcsec from its centre (float64)",
    "fit_shear": "strength of the fitted external shear (float64)",
    "fit_shear_angle": "orientation of the fitted external shear, degrees, as fit_position_angle (float64)",
    "fit_lens_light_mag": "AB magnitude of the fitted deflector light (float64)",
    "fit_source_mag": "AB magnitude of the fitted source before lensing (float64)",
    **{
        f"{name}_err": f"one standard deviation of the noise's error in {name}, from the fit's parameter "
        "covariance (float64; the noise's error only, a lens with substructure is off by more; null where the "
        "cutout does not constrain every parameter)"
        for name in ["fit_theta_e", "fit_axis_ratio", "fit_position_angle", "fit_lens_x", "fit_lens_y", "fit_shear",
                     "fit_shear_angle", "fit_lens_light_mag", "fit_source_mag"]
    },
    "fit_lens_ra": "right ascension of the fitted mass's centre by the cutout's WCS, degrees (float64; null "
    "without a celestial WCS)",
    "fit_lens_dec": "declination of the fitted mass's centre by the cutout's WCS, degrees (float64)",
    "fit_position_angle_sky": "orientation of the fitted mass's major axis on the sky, degrees east of north "
    "in [0, 180) (float64; null without a celestial WCS)",
    "fit_shear_angle_sky": "orientation of the fitted shear on the sky, degrees east of north (float64)",
    "fit_zero_point": "the AB zero point the cutout's pixels were converted from before the fit "
    "(float64; zero_point, zero_point_col or the image column's flux unit; null: the model's own units)",
    "fit_noise_map": "whether the cutout's noise map (``noise_col``; a FITS RMS, variance or weight "
    "extension) gave the fit its background noise (bool)",
    "fit_refit_spread": "the largest chi^2 difference between the fit and its refits of the cutout moved "
    "within its last 16 bits (float64; above 4: status 'unstable_fit')",
    "refit_answer_spread": "the largest difference in any class's probability between the answers on the "
    "fit's and the refits' residuals (float32; above 0.02: status 'unstable_fit')",
    "sr_image": "the super-resolved cutout (arrow.fixed_shape_tensor; task 'superres' or 'all')",
    "sr_wcs": "where sr_image lies on the sky: its celestial WCS as FITS header cards, which "
    "``astropy.wcs.WCS(text)`` reads (string; with sr_image, when the cutout is a FITS image or "
    "stamp with a celestial WCS; null otherwise)",
    "pixel_scale": "the cutout's pixel scale used, arcsec per pixel (float64; null when unknown)",
    "geometry": "how the cutout was brought to the model's grid ('resampled 101x101 at 0.1 to 0.101 "
    "arcsec/px, cropped to 64x64', 'padded ...'); 'as is' when used unchanged; 'deflector centred from "
    "column +2, row +0' when the classifier moved the lens galaxy's light to the centre; 'deflector more "
    "than 5 pixels off the centre ...' when it could not (the row is then out of its domain)",
    "nonfinite_pixels": "pixels of the cutout on the model's grid with no finite value (NaN, BLANK, flagged or "
    "of weight 0), whatever the nan policy did and whatever the status (int32; null: the row has no image)",
    "status": "'ok'; 'out_of_domain' (answered, but the cutout is unlike the training data: do not "
    "trust the probabilities); 'unstable_fit' (a residual classifier answered from a fit that refits of the "
    "cutout did not find again); 'ok: N non-finite pixels set to 0' ('... masked in the fit' for a "
    "residual classifier, whose fit leaves them out); or why the row has no prediction "
    "('skipped: ...', 'failed: ...')",
}


def _require_identifiers(given: pa.Schema, predicted: pa.Schema, engine: str, model: "Model") -> None:
    """Refuses predictions that could not be joined back to their cutouts.

    An engine's batches are cut where it pleases, so ``row`` (counted within each
    batch) names no cutout: without a column carried from the input (``given``)
    into the predictions the rows could not be told apart. The columns a residual
    classifier carries because it fits with them (PSF, exposure, zero point) name no
    cutout either: many share a value.
    """
    observation = {model._args[key] for key in ("psf_fwhm_col", "exposure_time_col", "zero_point_col", "psf_image_col",
                                                "psf_moffat_beta_col")}
    carried = [name for name in predicted.names
               if name in given.names and name != "row" and name not in PREDICTION_COLUMNS
               and name not in observation]
    if not carried:
        raise LensmaeError(
            f"on {engine}, `row` counts rows within each batch, and the input has no column to join the "
            "predictions back on: give id_col=\"...\" (a column of unique ids) or keep=[...], or add an id "
            "column first (Spark: `F.monotonically_increasing_id()`)"
        )


def _as_stream(data: Any) -> Any:
    """Anything Arrow-like as an object with ``__arrow_c_stream__``."""
    if hasattr(data, "__arrow_c_stream__"):
        return data
    import pyarrow.dataset as pads

    if isinstance(data, pads.Dataset):  # a folder of files, as pyarrow.dataset.dataset opens one
        return data.scanner().to_reader()
    if isinstance(data, pads.Scanner):
        return data.to_reader()
    if type(data).__name__ == "LazyFrame" and hasattr(data, "collect"):  # polars, lazily scanned
        return data.collect()
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return pa.Table.from_pandas(data, preserve_index=False)
    except ImportError:  # pragma: no cover - pandas is optional
        pass
    return pa.table(data)


class Model:
    """A loaded lensmae model; make one with :func:`load_model`.

    A model holds its weights and its own worker threads, and may be called from
    several Python threads at once. It pickles as the arguments that loaded it,
    so Dask, Spark or Ray workers load their own copy (once per process).
    """

    def __init__(self, model=None, *, sr_model=None, task="classify", device="cpu", threads=None,
                 batch_size=64, nan_policy="fail", pixel_scale=None, tta="none", psf_fwhm=None,
                 exposure_time=None, fit_refits=2, psf_fwhm_col="psf_fwhm", exposure_time_col="exposure_time",
                 zero_point=None, zero_point_col=None, psf_image=None, psf_image_col=None, psf_moffat_beta=None,
                 psf_moffat_beta_col=None, psf_image_scale=None):
        if psf_image is not None:  # any 2-D array-like, kept as tuples: hashable for the cache, picklable
            psf_image = tuple(tuple(float(v) for v in row) for row in psf_image)
        self._args = dict(model=model, sr_model=sr_model, task=task, device=device, threads=threads,
                          batch_size=batch_size, nan_policy=nan_policy,
                          pixel_scale=None if pixel_scale is None else str(pixel_scale), tta=tta,
                          psf_fwhm=psf_fwhm, exposure_time=exposure_time, fit_refits=fit_refits,
                          psf_fwhm_col=psf_fwhm_col, exposure_time_col=exposure_time_col,
                          zero_point=zero_point, zero_point_col=zero_point_col, psf_image=psf_image,
                          psf_image_col=psf_image_col, psf_moffat_beta=psf_moffat_beta,
                          psf_moffat_beta_col=psf_moffat_beta_col, psf_image_scale=psf_image_scale)
        self._inner = _loaded(**self._args)

    @property
    def class_names(self) -> list:
        """Class names, in the order of the ``p_<class>`` columns."""
        return self._inner.class_names

    @property
    def input_shape(self) -> Tuple[int, int]:
        """``(height, width)`` of the cutouts the model takes."""
        return self._inner.input_shape

    def predict(self, data: Any, *, image_col: Optional[str] = None, id_col: Optional[str] = None,
                keep: Sequence[str] = (), shape: Optional[Tuple[int, int]] = None,
                pixel_scale_col: Optional[str] = None, noise_col: Optional[str] = None) -> pa.Table:
        """Predicts every row of ``data`` and returns a ``pyarrow.Table``.

        ``data``: a pyarrow Table/RecordBatch/RecordBatchReader, a pyarrow Dataset
        or Scanner (``pyarrow.dataset.dataset("cutouts/")``), a polars DataFrame or
        LazyFrame, a pandas DataFrame, or any object with ``__arrow_c_stream__``. The image column
        (``image_col``; default ``image``, else the only tensor, list-of-numbers or
        FITS-bytes column) holds ``arrow.fixed_shape_tensor`` cutouts, lists of
        numbers (give ``shape=(h, w)`` unless the images are square), lists of
        image rows (a polars ``pl.Array(pl.Float32, (h, w))`` column, pandas' lists
        of lists) or FITS files as bytes (alert stamps). Pixels may be of any
        integer or floating type; a null pixel (pandas' NaN becomes one) is read as
        NaN and handled as ``nan_policy`` says.

        Cutouts of another size or pixel scale than the model's are resampled
        (conserving flux) and cropped or padded to its grid: the scale comes from
        ``pixel_scale_col`` (arcsec per pixel, per row), a stamp's WCS, the table's
        ``lensmae:pixel_scale`` metadata, or the model's ``pixel_scale`` option.

        ``noise_col``: a column of each cutout's noise map, sigma per pixel laid out as
        the image (a survey's RMS map), as ``lensmae predict --noise-col``: a
        noise-scaled model takes its median instead of estimating the noise, and a
        classifier of smooth-lens residuals weights its fit by it (``fit_noise_map``).

        One output row per input row, in order; the columns are those of
        ``lensmae.PREDICTION_COLUMNS``. With the same rows and batch size the
        values equal ``lensmae predict``'s bit for bit.
        """
        return self._inner.predict(_as_stream(data), image_col=image_col, id_col=id_col, keep=list(keep),
                                   shape=shape, pixel_scale_col=pixel_scale_col, noise_col=noise_col)

    def predict_files(self, paths: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]], *,
                      image_col: Optional[str] = None, id_col: Optional[str] = None, keep: Sequence[str] = (),
                      shape: Optional[Tuple[int, int]] = None, hdu: Optional[str] = None,
                      band: Optional[str] = None, flag_planes: Optional[Sequence[str]] = None,
                      rms_hdu: Optional[str] = None, weight_hdu: Optional[str] = None,
                      flag_hdu: Optional[str] = None, pixel_scale_col: Optional[str] = None,
                      noise_col: Optional[str] = None) -> pa.Table:
        """Predicts every cutout of the files at ``paths`` and returns a ``pyarrow.Table``.

        ``paths``: one path or a list of paths of one kind, as ``lensmae predict --input``
        takes them: FITS files and folders of FITS stamps (read in natural order, their
        noise maps and flags beside the flux), Parquet and Arrow IPC files, a folder of
        Parquet files, a HATS catalogue, a folder of ``.npy`` images. The options are
        ``lensmae predict``'s of the same names (``hdu``, ``band`` and ``flag_planes``
        for FITS files, ``--hdu``, ``--band`` and ``--flag-planes``); the rows and their
        values are those ``lensmae predict`` writes for the same files and batch size.
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return self._inner.predict_files(
            [os.fspath(p) for p in paths], image_col=image_col, id_col=id_col, keep=list(keep), shape=shape,
            hdu=hdu, band=band, flag_planes=None if flag_planes is None else list(flag_planes), rms_hdu=rms_hdu,
            weight_hdu=weight_hdu, flag_hdu=flag_hdu, pixel_scale_col=pixel_scale_col, noise_col=noise_col)

    def __reduce__(self):
        return (_model_from_args, (self._args,))

    def __repr__(self) -> str:
        return repr(self._inner)


@functools.lru_cache(maxsize=8)
def _loaded(**args) -> "_lensmae.Model":
    # One load per process and set of arguments: workers reuse it across partitions.
    return _lensmae.Model(**args)


def _model_from_args(args: dict) -> Model:
    return Model(**args)


def load_model(model: Optional[str] = "bundled:classifier", *, sr_model: Optional[str] = None,
               task: Optional[str] = None, device: str = "cpu", threads: Optional[int] = None,
               batch_size: int = 64, nan_policy: str = "fail",
               pixel_scale: Optional[Union[float, str]] = None, tta: str = "none",
               psf_fwhm: Optional[float] = None, exposure_time: Optional[float] = None,
               fit_refits: int = 2, psf_fwhm_col: str = "psf_fwhm",
               exposure_time_col: str = "exposure_time", zero_point: Optional[float] = None,
               zero_point_col: Optional[str] = None, psf_image: Any = None,
               psf_image_col: Optional[str] = None, psf_moffat_beta: Optional[float] = None,
               psf_moffat_beta_col: Optional[str] = None, psf_image_scale: Optional[float] = None) -> Model:
    """Loads a model: ``"bundled:classifier"`` (noise-free DeepLense Model II),
    ``"bundled:survey-classifier"`` (noisy Euclid VIS-like survey cutouts: weak but
    calibrated, see models/README.md), ``"bundled:survey-residual-classifier"`` (the
    same cutouts, each fitted with a smooth lens first: needs ``psf_fwhm`` and
    ``exposure_time``), ``"bundled:superres"`` or
    ``"bundled:survey-superres"`` (16x16 -> 64x64), or a checkpoint path.

    ``task``: ``classify`` (default), ``superres`` or ``all`` (super-resolve, then
    classify); inferred from ``sr_model`` when not given. ``device``: ``cpu`` or
    ``cuda[:N]`` (CUDA builds). ``threads``: worker threads of this model (default:
    all cores). ``nan_policy``: ``fail``, ``zero`` or ``skip-row`` for cutouts
    with NaN or infinite pixels. ``pixel_scale``: the cutouts' arcsec per pixel
    when they do not record it, or ``"model"`` to take them at the model's scale
    (cropped or padded, never resampled); as ``lensmae predict --pixel-scale``.
    ``tta``: ``"dihedral"`` averages the classifier's probabilities over the 8
    rotations and reflections of each cutout (8x the model's time), as
    ``lensmae predict --tta dihedral``. ``psf_fwhm`` (arcsec) and ``exposure_time``
    (s): for a classifier of smooth-lens residuals
    (``"bundled:survey-residual-classifier"``), which fits a smooth lens to every
    cutout first, the values of every cutout; without them each row's ``psf_fwhm``
    and ``exposure_time`` columns are read, or the columns ``psf_fwhm_col`` and
    ``exposure_time_col`` name (as ``lensmae predict --psf-fwhm``,
    ``--exposure-time``, ``--psf-fwhm-col``, ``--exposure-time-col``). Errors name
    these parameters as the command line names its options. ``fit_refits``: for the same classifier, how many times
    each cutout is fitted again, moved within half a 16-bit step; the answer is
    the mean of the probabilities over the fit and the refits, and a row whose
    refits land elsewhere (``fit_refit_spread`` above 4 in chi^2) or answer apart
    (``refit_answer_spread`` above 0.02) gets status ``unstable_fit`` (its answer
    depends on how the cutout was stored), as ``lensmae predict --fit-refits``; 0 reads the first
    fit alone and checks nothing. ``zero_point`` (AB mag) or ``zero_point_col``: for the
    same classifier, the photometric zero point of the cutouts' pixel values when they are
    not its instrument's electrons per second (23.9 for microjanskys, as Euclid MER
    cutouts; 31.4 for nanojanskys), for every cutout or per row, as ``lensmae predict
    --zero-point``, ``--zero-point-col``. Without either, an image column whose field
    metadata states a flux-density ``unit`` (``uJy``, ``nJy``, ``mJy``, ``Jy``,
    ``nanomaggy``; a FITS stamp's ``BUNIT``, else its header's ``PHOTFLAM`` and ``PHOTPLAM``,
    ``MJy/sr`` with ``PIXAR_SR``, ``FLUXMAG0`` or ``MAGZERO``) fixes it; cutouts in other units with none
    leave the fit far from the noise and are answered ``out_of_domain``. ``psf_image``
    (a square 2-D array, odd side, centred, at the cutouts' pixels) or ``psf_image_col``
    (a column of such images, one per cutout, as lists of values or of rows): for the
    same classifier, the survey's PSF model in place of a Gaussian of ``psf_fwhm``, as
    ``lensmae predict --psf-image``, ``--psf-image-col``; ``psf_image_scale`` (arcsec per
    pixel) where those images are not at the cutouts' pixels (an oversampled PSF model), as
    ``--psf-image-scale``. ``psf_moffat_beta`` or
    ``psf_moffat_beta_col``: a PSF that is a Moffat profile of the FWHM given and this beta
    (> 1), for every cutout or per row (``lensmae simulate`` writes ``psf_beta`` for a
    recipe of Moffat PSFs), as ``lensmae predict --psf-moffat-beta``, ``--psf-moffat-beta-col``.
    """
    if task is None:
        if model in ("bundled:superres", "bundled:survey-superres"):
            task, sr_model, model = "superres", model, None
        else:
            task = "all" if (sr_model and model) else "superres" if sr_model else "classify"
    return Model(model, sr_model=sr_model, task=task, device=device, threads=threads, batch_size=batch_size,
                 nan_policy=nan_policy, pixel_scale=pixel_scale, tta=tta, psf_fwhm=psf_fwhm,
                 exposure_time=exposure_time, fit_refits=fit_refits, psf_fwhm_col=psf_fwhm_col,
                 exposure_time_col=exposure_time_col, zero_point=zero_point, zero_point_col=zero_point_col,
                 psf_image=psf_image, psf_image_col=psf_image_col, psf_moffat_beta=psf_moffat_beta,
                 psf_moffat_beta_col=psf_moffat_beta_col, psf_image_scale=psf_image_scale)


def simulate(preset: str = "deeplense-model2", n_per_class: int = 100, seed: int = 1, *, task: str = "classify",
             factor: int = 4, config: Optional[str] = None, classes: Optional[Iterable[str]] = None,
             threads: Optional[int] = None, refit_detectability: bool = False) -> pa.Table:
    """Renders ``n_per_class`` lenses of each class and returns them as a table.

    The rows, columns and values of ``lensmae simulate --preset PRESET --seed SEED``:
    ``id``, ``label``, ``label_idx``, ``image`` (``arrow.fixed_shape_tensor``;
    ``task="superres"`` gives ``lr`` and ``hr``, ``factor`` apart),
    ``n_subhalos`` and the drawn parameters (Einstein radius, source magnitude,
    ``sub_snr``, ...). ``config`` is a TOML recipe file instead of a preset (it may
    start from one: ``extends = "survey"``); ``presets()`` lists the presets.
    ``refit_detectability`` also fills ``sub_snr_refit``: what is left of ``sub_snr``
    once the smooth lens and source are refitted to each image (a fit per image with
    substructure, ~0.1-0.2 s of a core each).
    """
    return _lensmae.simulate(preset=preset, n_per_class=n_per_class, seed=seed, task=task, factor=factor,
                             config=config, classes=list(classes) if classes is not None else None,
                             threads=threads, refit_detectability=refit_detectability)


def write_sr_fits(predictions: Union[str, os.PathLike], out: Union[str, os.PathLike], *,
                  overwrite: bool = False) -> dict:
    """Writes each super-resolved cutout of a predictions file (Parquet, Arrow IPC or
    FITS, as ``lensmae predict --task superres|all`` writes it) to the folder ``out``
    as a FITS file DS9 places on the sky, as ``lensmae sr-fits``: ``<id>.fits`` (an
    integer ``id`` column), else ``row-<row>.fits``, the image with its ``sr_wcs`` and
    the keywords ``ROW``, ``ID``/``OBJECT``, ``STATUS``, ``PRED_CLS``, ``MAX_PROB``,
    ``SRMODEL``. The folder appears whole or not at all; an existing one is kept
    unless ``overwrite``. Returns what was written: ``rows``, ``written``,
    ``placed_on_sky``, ``without_sr_image``.
    """
    rows, written, placed, without = _lensmae.write_sr_fits(str(predictions), str(out), overwrite)
    return {"rows": rows, "written": written, "placed_on_sky": placed, "without_sr_image": without}


def presets() -> list:
    """``(name, description)`` of every simulator preset."""
    return _lensmae.presets()
