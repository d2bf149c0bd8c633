"""lensmae predictions over LSDB catalogues, lazily, on Dask.

>>> import lsdb, lensmae, lensmae.lsdb
>>> catalog = lsdb.read_hats("cutouts/")
>>> model = lensmae.load_model()
>>> predicted = lensmae.lsdb.predict_catalog(catalog, model, shape=(64, 64))
>>> predicted.write_catalog("predictions/")   # or .compute(), .join(...)

Each Dask partition (one HATS pixel) goes through ``Model.predict`` on a worker,
which loads its own copy of the model once. The result is an LSDB catalogue with
the input's index (``_healpix_29``) and partitions, and the prediction columns
(``lensmae.PREDICTION_COLUMNS``; ``row`` counts rows within each partition): it
joins back to the input catalogue on its index or on the carried id column.

Size workers with one Dask thread more than the model's compute threads
(``threads_per_worker=k + 1`` and ``load_model(..., threads=k)``): LSDB reads the next
partition in the spare thread while lensmae predicts on the current one. With a
single Dask thread per worker, reading and predicting take turns (about a quarter
slower on 64x64 cutouts; BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import pyarrow as pa

from . import Model

__all__ = ["predict_catalog", "predict_frame"]


def predict_frame(frame, model: Model, *, image_col: Optional[str] = None, id_col: Optional[str] = None,
                  keep: Sequence[str] = (), shape: Optional[Tuple[int, int]] = None,
                  pixel_scale_col: Optional[str] = None, noise_col: Optional[str] = None):
    """The predictions of one pandas DataFrame (a partition), indexed like it."""
    import pandas as pd

    table = pa.Table.from_pandas(frame, preserve_index=False)
    predicted = model.predict(table, image_col=image_col, id_col=id_col, keep=keep, shape=shape,
                              pixel_scale_col=pixel_scale_col, noise_col=noise_col)
    # Arrow-backed columns: nullable probabilities stay float32, statuses strings.
    result = predicted.to_pandas(types_mapper=pd.ArrowDtype)
    result.index = frame.index
    return result


def predict_catalog(catalog: Any, model: Model, *, image_col: Optional[str] = None, id_col: Optional[str] = None,
                    keep: Sequence[str] = (), shape: Optional[Tuple[int, int]] = None,
                    pixel_scale_col: Optional[str] = None, noise_col: Optional[str] = None):
    """An LSDB catalogue of ``model``'s predictions for every row of ``catalog``.

    Lazy: nothing runs until ``compute()``, ``to_hats()`` or a join is asked for.
    ``image_col``, ``id_col``, ``keep``, ``shape``, ``pixel_scale_col`` and ``noise_col`` are those of
    :meth:`lensmae.Model.predict`. Empty partitions give empty frames with the
    prediction columns (LSDB and Dask pass such frames to infer schemas).
    """
    # The output's columns and dtypes, from an empty partition of the input.
    columns = dict(image_col=image_col, id_col=id_col, keep=keep, shape=shape, pixel_scale_col=pixel_scale_col,
                   noise_col=noise_col)
    meta = predict_frame(catalog.meta, model, **columns)

    def partition(frame, *_):
        return predict_frame(frame, model, **columns)

    return catalog.map_partitions(partition, meta=meta)
