"""PSF kernels as lensmae builds them (`sim::psf::PsfKernel`), for lenstronomy's
`psf_type='PIXEL'`: shared by the oracle and the benches that render with them."""
import numpy as np


def moffat_kernel(fwhm_pixels, beta, side):
    """A circular Moffat profile (1 + (r/alpha)^2)^-beta of `fwhm_pixels`, each pixel
    the mean of 5 x 5 samples across it, `side` pixels (odd), normalised to 1."""
    alpha = fwhm_pixels / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    offsets = (np.arange(5) - 2.0) / 5.0
    centres = np.arange(side) - side // 2
    y = (centres[:, None] + offsets[None, :]).ravel()  # 5 samples across each pixel
    r2 = y[:, None] ** 2 + y[None, :] ** 2
    samples = (1.0 + r2 / alpha ** 2) ** -beta
    kernel = samples.reshape(side, 5, side, 5).mean(axis=(1, 3))
    return kernel / kernel.sum()
