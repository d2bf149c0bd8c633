"""The cutouts of a lensmae dataset as a numpy cube, and the same table with other
pixels: what the bench scripts that rewrite or measure survey cutouts share."""
import numpy as np
import pyarrow as pa


def read_images(table, column="image"):
    """The `arrow.fixed_shape_tensor` column as an (n, side, side) float32 array."""
    tensor = table.column(column).combine_chunks()
    side = tensor.type.shape[0]
    return tensor.storage.flatten().to_numpy().reshape(len(table), side, side)


def with_images(table, images, column="image"):
    """`table` with `column` replaced by `images` (n, side, side), type and metadata kept."""
    index = table.schema.get_field_index(column)
    field = table.schema.field(index)
    side = images.shape[1]
    storage = pa.FixedSizeListArray.from_arrays(pa.array(images.astype(np.float32).reshape(-1)), side * side)
    return table.set_column(index, field, pa.ExtensionArray.from_storage(field.type, storage))


def border_background(image, width=4):
    """Median and noise sigma (1.4826 x MAD) of the cutout's border `width` pixels wide,
    sky far from the lens in a survey cutout."""
    border = np.concatenate(
        [image[:width].ravel(), image[-width:].ravel(), image[:, :width].ravel(), image[:, -width:].ravel()]
    )
    median = np.median(border)
    return median, 1.4826 * np.median(np.abs(border - median))
