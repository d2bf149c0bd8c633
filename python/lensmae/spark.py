"""lensmae predictions over Spark DataFrames, batch by batch with ``mapInArrow``.

>>> import lensmae, lensmae.spark
>>> cutouts = spark.read.parquet("cutouts/")      # image: array<float>, or FITS stamps as binary
>>> model = lensmae.load_model(threads=1)
>>> predicted = lensmae.spark.predict_dataframe(cutouts, model, id_col="object_id")
>>> predicted.write.parquet("predictions/")       # lazy until an action, as any DataFrame

Each Spark task hands its Arrow record batches to ``Model.predict`` in its Python
worker, which loads its own copy of the model once per process (the model pickles as
the arguments that loaded it). The result has one row per input row, in the order of
each partition, with the prediction columns of ``lensmae.PREDICTION_COLUMNS``; ``row``
counts rows within each Arrow batch (``spark.sql.execution.arrow.maxRecordsPerBatch``),
so join back on the carried id column (``id_col``, ``id`` by default).

Spark has no tensor type: images arrive as ``array<float>`` (or ``array<double>``, any
numeric type) of ``h * w`` values per row, square unless ``shape`` says otherwise, or as
``array<array<float>>`` image rows; a super-resolved cutout (``sr_image``) is returned as
``array<float>`` of its ``h * w`` values, row by row. Spark does not carry a Parquet
file's ``lensmae:pixel_scale`` metadata: give cutouts of another grid than the model's
their scale with ``pixel_scale_col`` or ``load_model(pixel_scale=...)``.

Spark runs one task per core, each in its own Python worker: load the model with
``threads=1`` (or ``threads=k`` with ``spark.task.cpus=k``) so that the workers do not
contend for the same cores.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence, Tuple

import pyarrow as pa

from . import Model, _require_identifiers

__all__ = ["predict_dataframe", "spark_arrow_schema"]

# The start of PySpark 4's warning on pandas >= 3 (a regular expression).
_PANDAS_3_WARNING = "PySpark does not yet fully support pandas"


def _spark_type(arrow_type: pa.DataType) -> pa.DataType:
    """The type Spark can hold for one of lensmae's output columns."""
    if isinstance(arrow_type, pa.BaseExtensionType):
        arrow_type = arrow_type.storage_type
    if pa.types.is_fixed_size_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return pa.list_(_spark_type(arrow_type.value_type))
    return arrow_type


def spark_arrow_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with tensors and fixed-size lists as the lists Spark can hold."""
    return pa.schema([field.with_type(_spark_type(field.type)) for field in schema], metadata=None)


def _as_spark_batch(table: pa.Table, schema: pa.Schema):
    """``table``'s columns as the types of ``schema``, one record batch at a time."""
    columns = []
    for column, field in zip(table.columns, schema):
        chunks = []
        for chunk in column.chunks:
            if isinstance(chunk.type, pa.BaseExtensionType):
                chunk = chunk.storage
            chunks.append(chunk.cast(field.type))
        columns.append(pa.chunked_array(chunks, type=field.type))
    yield from pa.Table.from_arrays(columns, schema=schema).to_batches()


def predict_dataframe(df: Any, model: Model, *, image_col: Optional[str] = None, id_col: Optional[str] = None,
                      keep: Sequence[str] = (), shape: Optional[Tuple[int, int]] = None,
                      pixel_scale_col: Optional[str] = None, noise_col: Optional[str] = None):
    """A Spark DataFrame of ``model``'s predictions for every row of ``df``.

    Lazy, as ``df.mapInArrow``. ``image_col``, ``id_col``, ``keep``, ``shape``,
    ``pixel_scale_col`` and ``noise_col`` are those of :meth:`lensmae.Model.predict`. The output's
    schema is worked out on the driver from ``df``'s, so a missing column or an image
    column of a type lensmae cannot read is refused there, before any task runs, as
    is an input without a column to join the predictions back on (``id``, ``id_col``,
    ``keep`` or the carried coordinates: ``row`` counts within each Arrow batch).
    """
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    columns = dict(image_col=image_col, id_col=id_col, keep=list(keep), shape=shape, pixel_scale_col=pixel_scale_col,
                   noise_col=noise_col)
    input_schema = to_arrow_schema(df.schema)
    output_schema = spark_arrow_schema(model.predict(input_schema.empty_table(), **columns).schema)
    _require_identifiers(input_schema, output_schema, "Spark", model)

    def predict_batches(batches):
        for batch in batches:
            yield from _as_spark_batch(model.predict(batch, **columns), output_schema)

    with warnings.catch_warnings():
        # PySpark builds mapInArrow on its pandas UDF machinery and warns that it does not
        # fully support pandas 3 (which LSDB needs in the same environment); no pandas
        # passes through this Arrow-only path, so the warning says nothing to act on.
        warnings.filterwarnings("ignore", message=_PANDAS_3_WARNING, category=FutureWarning)
        return df.mapInArrow(predict_batches, from_arrow_schema(output_schema))
