//! A fully specified lensing scene and its renderer.
//!
//! Single lens plane: every pixel centre is traced back to the source plane with
//! beta = theta - s * sum_i alpha_i(theta), where `s` is the deflection rescaling of
//! the DeepLense Model II/III multi-plane convention (1 otherwise); the source
//! surface brightness there, times the pixel area, is the pixel's flux. The PSF is
//! applied after binning supersampled pixels back to the native grid.

use super::grid::{Image, PixelGrid};
use super::light::{LightProfile, Sersic, SersicKernel};
use super::mass::{MassModel, MassProfile, Shear, SieKernel};
use super::psf::Psf;

/// Everything that bends and emits light in one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Deflectors on the lens plane (main lens, shear, substructure).
    pub lenses: Vec<MassModel>,
    /// Factor applied to the summed deflection.
    pub deflection_scale: f64,
    /// The lensed source.
    pub source: Sersic,
}

/// How the sky is sampled into pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    /// The native pixel grid.
    pub grid: PixelGrid,
    /// Sub-pixels per side used to integrate each pixel (1 = centre sampling).
    pub supersampling: usize,
    /// Point-spread function.
    pub psf: Psf,
}

/// A deflector prepared for many rays: trigonometry done once, point masses
/// gathered into flat arrays the compiler can vectorise.
enum Deflector {
    Sie(SieKernel),
    Shear(Shear),
    PointMasses {
        x: Vec<f64>,
        y: Vec<f64>,
        theta_e_sq: Vec<f64>,
    },
    Other(MassModel),
}

/// lenstronomy's floor on the squared distance to a point mass.
const POINT_MASS_R2_MIN: f64 = 1e-50;

impl Deflector {
    fn prepare(lenses: &[MassModel]) -> Vec<Deflector> {
        let mut out = Vec::new();
        let (mut px, mut py, mut pt) = (Vec::new(), Vec::new(), Vec::new());
        for lens in lenses {
            match lens {
                MassModel::Sie(p) => out.push(Deflector::Sie(p.kernel())),
                MassModel::Shear(p) => out.push(Deflector::Shear(p.clone())),
                MassModel::PointMass(p) => {
                    px.push(p.center_x);
                    py.push(p.center_y);
                    pt.push(p.theta_e * p.theta_e);
                }
                other => out.push(Deflector::Other(other.clone())),
            }
        }
        if !px.is_empty() {
            out.push(Deflector::PointMasses {
                x: px,
                y: py,
                theta_e_sq: pt,
            });
        }
        out
    }

    #[inline]
    fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        match self {
            Deflector::Sie(k) => k.deflection(x, y),
            Deflector::Shear(s) => s.deflection(x, y),
            Deflector::Other(m) => m.deflection(x, y),
            Deflector::PointMasses {
                x: cx,
                y: cy,
                theta_e_sq,
            } => {
                let (mut ax, mut ay) = (0.0, 0.0);
                for ((&px, &py), &t2) in cx.iter().zip(cy).zip(theta_e_sq) {
                    let (dx, dy) = (x - px, y - py);
                    let k = t2 / (dx * dx + dy * dy).max(POINT_MASS_R2_MIN);
                    ax += k * dx;
                    ay += k * dy;
                }
                (ax, ay)
            }
        }
    }
}

impl Scene {
    /// Source-plane position of the ray through (x, y).
    pub fn ray_shoot(&self, x: f64, y: f64) -> (f64, f64) {
        let (ax, ay) = self.lenses.iter().fold((0.0, 0.0), |(sx, sy), l| {
            let (ax, ay) = l.deflection(x, y);
            (sx + ax, sy + ay)
        });
        (x - self.deflection_scale * ax, y - self.deflection_scale * ay)
    }

    /// Lensed surface brightness sampled on the camera grid, before the PSF and
    /// without noise. Pixel values are flux per pixel.
    pub fn render_unconvolved(&self, camera: &Camera) -> Image {
        let s = camera.supersampling.max(1);
        let grid = camera.grid.supersampled(s);
        let deflectors = Deflector::prepare(&self.lenses);
        let source: SersicKernel = self.source.kernel();
        let area = grid.pixel_area();
        let coords: Vec<f64> = (0..grid.size).map(|i| grid.coordinate(i)).collect();
        let mut image = Image::zeros(grid.size);
        for (row, y) in coords.iter().enumerate() {
            let out = &mut image.pixels[row * grid.size..(row + 1) * grid.size];
            for (o, x) in out.iter_mut().zip(&coords) {
                let (mut ax, mut ay) = (0.0, 0.0);
                for d in &deflectors {
                    let (dx, dy) = d.deflection(*x, *y);
                    ax += dx;
                    ay += dy;
                }
                let bx = x - self.deflection_scale * ax;
                let by = y - self.deflection_scale * ay;
                *o = source.surface_brightness(bx, by) * area;
            }
        }
        if s > 1 {
            image.bin_sum(s)
        } else {
            image
        }
    }

    /// The noise-free image: lensed, pixelated and PSF-convolved.
    pub fn render(&self, camera: &Camera) -> Image {
        camera
            .psf
            .convolve(&self.render_unconvolved(camera), camera.grid.pixel_scale)
    }

    /// Total flux of the unlensed source per unit amplitude.
    pub fn source_flux_per_amp(&self) -> f64 {
        self.source.total_flux_per_amp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::mass::{PointMass, Sie};

    fn scene(lenses: Vec<MassModel>) -> Scene {
        Scene {
            lenses,
            deflection_scale: 1.0,
            source: Sersic {
                amp: 1.0,
                r_sersic: 0.2,
                n_sersic: 1.0,
                e1: 0.0,
                e2: 0.0,
                center_x: 0.0,
                center_y: 0.0,
            },
        }
    }

    #[test]
    fn prepared_deflectors_agree_with_the_profiles() {
        let lenses = vec![
            MassModel::Sie(Sie {
                theta_e: 1.1,
                e1: 0.1,
                e2: -0.05,
                center_x: 0.02,
                center_y: 0.0,
            }),
            MassModel::PointMass(PointMass {
                theta_e: 0.01,
                center_x: 0.5,
                center_y: 0.5,
            }),
            MassModel::PointMass(PointMass {
                theta_e: 0.02,
                center_x: -0.5,
                center_y: 0.3,
            }),
        ];
        let sc = scene(lenses);
        let camera = Camera {
            grid: PixelGrid {
                size: 16,
                pixel_scale: 0.2,
            },
            supersampling: 1,
            psf: Psf::None,
        };
        let img = sc.render(&camera);
        let g = camera.grid;
        for (row, col) in [(0, 0), (3, 7), (15, 2)] {
            let (bx, by) = sc.ray_shoot(g.coordinate(col), g.coordinate(row));
            let expected = sc.source.surface_brightness(bx, by) * g.pixel_area();
            assert!((img.pixels[row * 16 + col] - expected).abs() < 1e-15 * expected.max(1.0));
        }
    }

    #[test]
    fn supersampling_converges_to_the_pixel_integral() {
        let sc = scene(vec![]);
        let grid = PixelGrid {
            size: 64,
            pixel_scale: 0.05,
        };
        let flux = |s| {
            let img = sc.render(&Camera {
                grid,
                supersampling: s,
                psf: Psf::None,
            });
            img.pixels.iter().sum::<f64>()
        };
        let total = sc.source_flux_per_amp();
        assert!((flux(5) - total).abs() / total < 2e-3, "{} {}", flux(5), total);
    }
}
