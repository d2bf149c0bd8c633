"""lensmae predictions over Ray Datasets, batch by batch with ``map_batches``.

>>> import ray, lensmae, lensmae.ray
>>> cutouts = ray.data.read_parquet("cutouts/")
>>> model = lensmae.load_model(threads=1)
>>> predicted = lensmae.ray.predict_dataset(cutouts, model, id_col="object_id")
>>> predicted.write_parquet("predictions/")      # lazy until consumed, as any Dataset

Each Ray task hands its batches to ``Model.predict`` as pyarrow tables, in a worker
process that loads its own copy of the model once (the model pickles as the arguments
that loaded it). The result has one row per input row, with the prediction columns of
``lensmae.PREDICTION_COLUMNS``; ``row`` counts rows within each batch, so join back on
the carried id column (``id_col``, ``id`` by default).

Ray schedules one task per CPU it is told a task takes (``num_cpus``, 1 by default):
load the model with ``threads=k`` and pass ``num_cpus=k`` so that the tasks on one node
do not contend for the same cores.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import pyarrow as pa

from . import Model, _require_identifiers

__all__ = ["predict_dataset"]


def predict_dataset(dataset: Any, model: Model, *, image_col: Optional[str] = None, id_col: Optional[str] = None,
                    keep: Sequence[str] = (), shape: Optional[Tuple[int, int]] = None,
                    pixel_scale_col: Optional[str] = None, noise_col: Optional[str] = None,
                    **map_batches_options: Any):
    """A Ray Dataset of ``model``'s predictions for every row of ``dataset``.

    Lazy, as ``dataset.map_batches``. ``image_col``, ``id_col``, ``keep``, ``shape``,
    ``pixel_scale_col`` and ``noise_col`` are those of :meth:`lensmae.Model.predict`; other keyword
    arguments go to ``map_batches`` (``batch_size``, ``num_cpus``, ``concurrency``...).
    Image columns may be Ray's own tensor columns (``ray.data.from_numpy``), Arrow's
    ``fixed_shape_tensor``, lists of numbers or of image rows, or FITS stamps as bytes.
    An input without a column to join the predictions back on (``id``, ``id_col``,
    ``keep`` or the carried coordinates) fails its first task: ``row`` counts within
    each batch.
    """
    columns = dict(image_col=image_col, id_col=id_col, keep=list(keep), shape=shape, pixel_scale_col=pixel_scale_col,
                   noise_col=noise_col)

    def predict_batch(batch: pa.Table) -> pa.Table:
        predicted = model.predict(batch, **columns)
        _require_identifiers(batch.schema, predicted.schema, "Ray", model)
        return predicted

    return dataset.map_batches(predict_batch, batch_format="pyarrow", **map_batches_options)
