"""A small DeepLense-style .npy folder tree written by numpy itself, including the
release's pickled axion files (object arrays [image, m_a]), for the npy-tree reader.
Run from the repository root: python tests/oracle/npy_tree_fixture.py
"""
import os

import numpy as np

root = os.path.join("fixtures", "npy-tree")
rng = np.random.default_rng(11)
for cls in ["axion", "cdm", "no_sub"]:
    os.makedirs(os.path.join(root, cls), exist_ok=True)
    for i in range(2):
        image = rng.random((8, 8))
        name = os.path.join(root, cls, f"{cls}_sim_{1000 + i}.npy")
        if cls == "axion":
            # As the release: np.save of np.array([image, m_a]) -> a pickled object array.
            obj = np.empty(2, dtype=object)
            obj[0], obj[1] = image, 10 ** rng.uniform(-24, -22)
            np.save(name, obj, allow_pickle=True)
        else:
            np.save(name, image)
        np.savetxt(name.replace(".npy", ".txt"), image.reshape(1, -1), fmt="%.17g")
# The release was written by numpy 1.x with an older pickle protocol: one file so.
import pickle  # noqa: E402

from numpy.lib import format as npformat  # noqa: E402

image = rng.random((8, 8))
obj = np.empty(2, dtype=object)
obj[0], obj[1] = image, np.float64(3.3e-23)  # a numpy scalar, as axion_masses[i] was
name = os.path.join(root, "axion", "axion_sim_1002.npy")
with open(name, "wb") as f:
    npformat.write_array_header_1_0(f, npformat.header_data_from_array_1_0(obj))
    pickle.dump(obj, f, protocol=2)
np.savetxt(name.replace(".npy", ".txt"), image.reshape(1, -1), fmt="%.17g")
assert np.array_equal(np.load(name, allow_pickle=True)[0], image)
print("wrote", root)
