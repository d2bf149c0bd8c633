//! A fully specified lensing scene and its renderer.
//!
//! Single lens plane: every pixel centre is traced back to the source plane with
//! beta = theta - s * sum_i alpha_i(theta), where `s` is the deflection rescaling of
//! the DeepLense Model II/III multi-plane convention (1 otherwise); the source
//! surface brightness there, times the pixel area, is the pixel's flux. The PSF is
//! applied after binning supersampled pixels back to the native grid. The
//! deflector's own light and a neighbouring galaxy or star, when present, are
//! added unlensed before the PSF.

use super::grid::{Image, PixelGrid};
use super::light::{Sersic, SersicKernel};
use super::mass::{MassModel, MassProfile, Shear, SieKernel, TnfwKernel};
use super::psf::Psf;
use std::sync::Arc;

/// Everything that bends and emits light in one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Deflectors on the lens plane (main lens, shear, substructure).
    pub lenses: Vec<MassModel>,
    /// Factor applied to the summed deflection.
    pub deflection_scale: f64,
    /// The lensed source.
    pub source: Sersic,
    /// The deflector's light (not lensed).
    pub lens_light: Option<Sersic>,
    /// A galaxy or star beside the lens (not lensed).
    pub neighbour: Option<Neighbour>,
}

/// An unlensed object beside the lens.
#[derive(Debug, Clone, PartialEq)]
pub enum Neighbour {
    /// A galaxy.
    Galaxy(Sersic),
    /// A point source: all its flux in the nearest sub-pixel, spread by the PSF.
    Star {
        /// Total flux, per second.
        flux: f64,
        /// Position x, arcsec.
        x: f64,
        /// Position y, arcsec.
        y: f64,
    },
}

/// A noise-free render kept in its parts, one value per sub-pixel ray: where
/// each ray lands in the source plane, the lensed source's flux there, and each
/// unlensed profile's flux. A fit's forward-difference Jacobian moves one
/// parameter at a time, so most of its renders change one part of the scene;
/// [`LayeredRender::rerender`] redoes only the parts that changed (the lens: rays
/// and source; the source: its flux on the same rays; the deflector's light: the
/// unlensed flux). [`LayeredRender::image`] is, to the bit, what
/// [`Scene::render_with`] gives the same scene without a fixed field: each part is
/// computed row by row as there and added in the same order.
#[derive(Debug, Clone)]
pub struct LayeredRender {
    scene: Scene,
    camera: Camera,
    source_x: Arc<Vec<f64>>,
    source_y: Arc<Vec<f64>>,
    lensed_source: Arc<Vec<f64>>,
    /// The flux of each of `scene.unlensed_kernels()`, in that order.
    unlensed: Arc<Vec<Vec<f64>>>,
}

impl LayeredRender {
    /// The render of `scene` on the same camera, reusing the parts it shares with
    /// this one.
    pub fn rerender(&self, scene: &Scene) -> LayeredRender {
        let mut next = LayeredRender { scene: scene.clone(), ..self.clone() };
        let old = &self.scene;
        let relensed = scene.lenses != old.lenses || scene.deflection_scale != old.deflection_scale;
        if relensed {
            next.trace_rays();
        }
        if relensed || scene.source != old.source {
            next.shade_source();
        }
        if scene.lens_light != old.lens_light || scene.neighbour != old.neighbour {
            next.shade_unlensed();
        }
        next
    }

    /// The scene this render shows.
    pub fn scene(&self) -> &Scene {
        &self.scene
    }

    /// The noise-free image: the parts added per sub-pixel, binned, PSF-convolved.
    pub fn image(&self) -> Image {
        let grid = self.supersampled_grid();
        let mut image = Image { size: grid.size, pixels: self.lensed_source.to_vec() };
        for light in self.unlensed.iter() {
            image.pixels.iter_mut().zip(light).for_each(|(p, l)| *p += l);
        }
        if let Some((at, flux)) = self.scene.star_sub_pixel(&grid) {
            image.pixels[at] += flux;
        }
        let s = self.camera.supersampling.max(1);
        let binned = if s > 1 { image.bin_sum(s) } else { image };
        self.camera.psf.convolve(&binned, self.camera.grid.pixel_scale)
    }

    fn supersampled_grid(&self) -> PixelGrid {
        self.camera.grid.supersampled(self.camera.supersampling.max(1))
    }

    fn trace_rays(&mut self) {
        // The field adds the deflectors row by row in the scene's order, as a render does.
        let field = DeflectionField::new(&self.scene.lenses, &self.camera);
        let coords = field.grid.coordinates();
        let (mut source_x, mut source_y) = (vec![0.0; field.ax.len()], vec![0.0; field.ay.len()]);
        let deflected = field.ax.chunks_exact(coords.len()).zip(field.ay.chunks_exact(coords.len()));
        let source_plane = source_x.chunks_exact_mut(coords.len()).zip(source_y.chunks_exact_mut(coords.len()));
        for ((&y, (ax, ay)), (bx, by)) in coords.iter().zip(deflected).zip(source_plane) {
            self.scene.source_plane_row(&coords, y, ax, ay, bx, by);
        }
        (self.source_x, self.source_y) = (Arc::new(source_x), Arc::new(source_y));
    }

    fn shade_source(&mut self) {
        let grid = self.supersampled_grid();
        let source = self.scene.source.kernel();
        let mut flux = vec![0.0; grid.size * grid.size];
        let rows = self.source_x.chunks_exact(grid.size).zip(self.source_y.chunks_exact(grid.size));
        for ((bx, by), out) in rows.zip(flux.chunks_exact_mut(grid.size)) {
            source.surface_brightness_row(bx, by, grid.pixel_area(), out);
        }
        self.lensed_source = Arc::new(flux);
    }

    fn shade_unlensed(&mut self) {
        let grid = self.supersampled_grid();
        let coords = grid.coordinates();
        let mut row_y = vec![0.0; grid.size];
        let layers = self
            .scene
            .unlensed_kernels()
            .iter()
            .map(|profile| {
                let mut flux = vec![0.0; grid.size * grid.size];
                for (out, &y) in flux.chunks_exact_mut(grid.size).zip(&coords) {
                    row_y.fill(y);
                    profile.surface_brightness_row(&coords, &row_y, grid.pixel_area(), out);
                }
                flux
            })
            .collect();
        self.unlensed = Arc::new(layers);
    }
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

/// The deflection of a fixed set of lenses at every sub-pixel of a camera grid,
/// computed once and reused for every image that contains those lenses (the
/// DeepLense recipes fix the main lens and shear, so only the substructure and the
/// source change from image to image).
#[derive(Debug, Clone)]
pub struct DeflectionField {
    lenses: Vec<MassModel>,
    grid: PixelGrid,
    ax: Vec<f64>,
    ay: Vec<f64>,
}

impl DeflectionField {
    /// Evaluate `lenses` on the (supersampled) grid of `camera`.
    pub fn new(lenses: &[MassModel], camera: &Camera) -> DeflectionField {
        let grid = camera.grid.supersampled(camera.supersampling.max(1));
        let deflectors = Deflector::prepare(lenses, &grid);
        let coords = grid.coordinates();
        let (mut ax, mut ay) = (vec![0.0; grid.size * grid.size], vec![0.0; grid.size * grid.size]);
        for (row, &y) in coords.iter().enumerate() {
            let span = row * grid.size..(row + 1) * grid.size;
            for d in &deflectors {
                d.accumulate_row(&coords, y, &mut ax[span.clone()], &mut ay[span.clone()]);
            }
        }
        DeflectionField { lenses: lenses.to_vec(), grid, ax, ay }
    }

    /// Whether this field holds the first lenses of `scene` on `camera`'s grid.
    fn covers(&self, scene: &Scene, camera: &Camera) -> bool {
        scene.lenses.starts_with(&self.lenses) && camera.grid.supersampled(camera.supersampling.max(1)) == self.grid
    }
}

/// A deflector prepared for many rays: trigonometry done once, point masses
/// gathered into flat arrays the compiler can vectorise.
enum Deflector {
    Sie(SieKernel),
    Tnfw(TnfwKernel),
    Shear(Shear),
    PointMasses { x: Vec<f64>, y: Vec<f64>, theta_e_sq: Vec<f64> },
    Other(MassModel),
}

/// Floor on the squared distance to a point mass, arcsec^2 (see `point_masses_row`).
const POINT_MASS_R2_MIN: f64 = 1e-30;

impl Deflector {
    /// The deflectors of `lenses` for rays on `grid`.
    fn prepare(lenses: &[MassModel], grid: &PixelGrid) -> Vec<Deflector> {
        // Half the grid's diagonal and a pixel of margin: no ray is farther from the centre.
        let half_diagonal = (0.5 * grid.size as f64 + 1.0) * grid.pixel_scale * std::f64::consts::SQRT_2;
        let mut out = Vec::new();
        let (mut px, mut py, mut pt) = (Vec::new(), Vec::new(), Vec::new());
        for lens in lenses {
            match lens {
                MassModel::Sie(p) => out.push(Deflector::Sie(p.kernel())),
                MassModel::Tnfw(p) => {
                    let r_max = p.center_x.hypot(p.center_y) + half_diagonal;
                    out.push(Deflector::Tnfw(p.kernel_between(nearest_ray(grid, p.center_x, p.center_y), r_max)))
                }
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
            out.push(Deflector::PointMasses { x: px, y: py, theta_e_sq: pt });
        }
        out
    }

    /// Add the deflection at every (xs[i], y) of one image row to (ax[i], ay[i]).
    ///
    /// Working a row at a time keeps the inner loops free of dependencies between
    /// iterations, so the compiler vectorises them (point masses especially).
    fn accumulate_row(&self, xs: &[f64], y: f64, ax: &mut [f64], ay: &mut [f64]) {
        match self {
            Deflector::PointMasses { x: cx, y: cy, theta_e_sq } => point_masses_row(cx, cy, theta_e_sq, xs, y, ax, ay),
            Deflector::Tnfw(k) => k.accumulate_row(xs, y, ax, ay),
            Deflector::Shear(s) => {
                for ((x, ax), ay) in xs.iter().zip(ax.iter_mut()).zip(ay.iter_mut()) {
                    *ax += s.gamma1 * x + s.gamma2 * y;
                    *ay += s.gamma2 * x - s.gamma1 * y;
                }
            }
            Deflector::Sie(k) => k.accumulate_row(xs, y, ax, ay),
            Deflector::Other(m) => Self::accumulate_with(xs, y, ax, ay, |x, y| m.deflection(x, y)),
        }
    }

    #[inline]
    fn accumulate_with(xs: &[f64], y: f64, ax: &mut [f64], ay: &mut [f64], f: impl Fn(f64, f64) -> (f64, f64)) {
        for ((x, ax), ay) in xs.iter().zip(ax.iter_mut()).zip(ay.iter_mut()) {
            let (dx, dy) = f(*x, y);
            *ax += dx;
            *ay += dy;
        }
    }
}

/// Point-mass deflections along one row. Compiled for AVX-512, AVX2 and the
/// baseline, picked at run time: the loop is plain Rust that each target
/// vectorises to its own width, and it dominates renders with many subhalos.
///
/// The f64 division is the bottleneck, so 1/r^2 starts from an f32 reciprocal
/// (twice the lanes, a fraction of the cost) refined by one Newton step in f64:
/// the relative error goes from ~1e-7 to its square, ~1e-14, far below what an
/// image resolves. Fused multiply-adds keep the loop short (on CPUs without FMA
/// the fallback build is slower, not less exact). r^2 is floored at 1e-30
/// arcsec^2 (lenstronomy: 1e-50), which only matters for a ray passing within
/// 1e-15" of a point mass.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn point_masses_row(cx: &[f64], cy: &[f64], theta_e_sq: &[f64], xs: &[f64], y: f64, ax: &mut [f64], ay: &mut [f64]) {
    for ((&px, &py), &t2) in cx.iter().zip(cy).zip(theta_e_sq) {
        let dy = y - py;
        for ((x, ax), ay) in xs.iter().zip(ax.iter_mut()).zip(ay.iter_mut()) {
            let dx = x - px;
            let r2 = dx.mul_add(dx, dy * dy).max(POINT_MASS_R2_MIN);
            let guess = (1.0f32 / r2 as f32) as f64;
            let inv = guess * (-r2).mul_add(guess, 2.0);
            let k = t2 * inv;
            *ax = k.mul_add(dx, *ax);
            *ay = k.mul_add(dy, *ay);
        }
    }
}

/// The distance from (x, y) to the nearest ray of `grid` (its pixel centres).
fn nearest_ray(grid: &PixelGrid, x: f64, y: f64) -> f64 {
    let last = grid.size.saturating_sub(1) as f64;
    let nearest = |c: f64| {
        let index = (c / grid.pixel_scale + last / 2.0).round().clamp(0.0, last);
        (grid.coordinate(index as usize) - c).abs()
    };
    nearest(x).hypot(nearest(y))
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
        self.render_unconvolved_with(camera, None)
    }

    /// As [`Self::render_unconvolved`], taking the deflection of the scene's first
    /// lenses from `fixed` when it holds exactly those lenses on this grid (and
    /// computing everything when it does not).
    pub fn render_unconvolved_with(&self, camera: &Camera, fixed: Option<&DeflectionField>) -> Image {
        self.render_unconvolved_split(camera, fixed, None).0
    }

    /// The unconvolved image and, with `smooth_lenses`, the image of the first
    /// that many lenses alone, from one pass: the smooth lenses' deflection and
    /// the lens light are computed once for both (each image as its own render
    /// would give it, to the bit: the deflections add in the same order).
    fn render_unconvolved_split(
        &self,
        camera: &Camera,
        fixed: Option<&DeflectionField>,
        smooth_lenses: Option<usize>,
    ) -> (Image, Option<Image>) {
        let s = camera.supersampling.max(1);
        let grid = camera.grid.supersampled(s);
        let fixed = fixed.filter(|f| f.covers(self, camera) && smooth_lenses.is_none_or(|n| f.lenses.len() <= n));
        let first = fixed.map_or(0, |f| f.lenses.len());
        let split = smooth_lenses.map_or(self.lenses.len(), |n| n.clamp(first, self.lenses.len()));
        let smooth_deflectors = Deflector::prepare(&self.lenses[first..split], &grid);
        let other_deflectors = Deflector::prepare(&self.lenses[split..], &grid);
        let source: SersicKernel = self.source.kernel();
        let unlensed = self.unlensed_kernels();
        let area = grid.pixel_area();
        let coords = grid.coordinates();
        let mut image = Image::zeros(grid.size);
        let mut smooth = smooth_lenses.map(|_| Image::zeros(grid.size));
        let (mut ax, mut ay) = (vec![0.0; grid.size], vec![0.0; grid.size]);
        let (mut bx, mut by) = (vec![0.0; grid.size], vec![0.0; grid.size]);
        let mut light = vec![0.0; grid.size];
        let lensed_source = |ax: &[f64], ay: &[f64], y: f64, bx: &mut [f64], by: &mut [f64], out: &mut [f64]| {
            self.source_plane_row(&coords, y, ax, ay, bx, by);
            source.surface_brightness_row(bx, by, area, out);
        };
        for (row, &y) in coords.iter().enumerate() {
            let span = row * grid.size..(row + 1) * grid.size;
            match fixed {
                Some(f) => {
                    ax.copy_from_slice(&f.ax[span.clone()]);
                    ay.copy_from_slice(&f.ay[span.clone()]);
                }
                None => {
                    ax.fill(0.0);
                    ay.fill(0.0);
                }
            }
            for d in &smooth_deflectors {
                d.accumulate_row(&coords, y, &mut ax, &mut ay);
            }
            if let Some(smooth) = smooth.as_mut() {
                lensed_source(&ax, &ay, y, &mut bx, &mut by, &mut smooth.pixels[span.clone()]);
            }
            for d in &other_deflectors {
                d.accumulate_row(&coords, y, &mut ax, &mut ay);
            }
            let pixels = &mut image.pixels[span.clone()];
            lensed_source(&ax, &ay, y, &mut bx, &mut by, pixels);
            for profile in &unlensed {
                by.fill(y);
                profile.surface_brightness_row(&coords, &by, area, &mut light);
                pixels.iter_mut().zip(&light).for_each(|(p, l)| *p += l);
                if let Some(smooth) = smooth.as_mut() {
                    smooth.pixels[span.clone()].iter_mut().zip(&light).for_each(|(p, l)| *p += l);
                }
            }
        }
        if let Some((at, flux)) = self.star_sub_pixel(&grid) {
            image.pixels[at] += flux;
            if let Some(smooth) = smooth.as_mut() {
                smooth.pixels[at] += flux;
            }
        }
        if s > 1 {
            (image.bin_sum(s), smooth.map(|i| i.bin_sum(s)))
        } else {
            (image, smooth)
        }
    }

    /// Where the rays of one row at height `y`, deflected by (`ax`, `ay`), land in
    /// the source plane.
    fn source_plane_row(&self, xs: &[f64], y: f64, ax: &[f64], ay: &[f64], bx: &mut [f64], by: &mut [f64]) {
        let scale = self.deflection_scale;
        for ((b, x), a) in bx.iter_mut().zip(xs).zip(ax) {
            *b = x - scale * a;
        }
        for (b, a) in by.iter_mut().zip(ay) {
            *b = y - scale * a;
        }
    }

    /// The unlensed profiles, in the order their light is added: the deflector's,
    /// then a neighbouring galaxy's.
    fn unlensed_kernels(&self) -> Vec<SersicKernel> {
        let galaxy = match &self.neighbour {
            Some(Neighbour::Galaxy(g)) => Some(g),
            _ => None,
        };
        self.lens_light.iter().chain(galaxy).map(Sersic::kernel).collect()
    }

    /// The sub-pixel of `grid` a neighbouring star falls in, and its flux.
    fn star_sub_pixel(&self, grid: &PixelGrid) -> Option<(usize, f64)> {
        let Some(Neighbour::Star { flux, x, y }) = self.neighbour else { return None };
        let nearest = |v: f64| (v / grid.pixel_scale + (grid.size as f64 - 1.0) / 2.0).round();
        let (col, row) = (nearest(x), nearest(y));
        let inside = |i: f64| (0.0..grid.size as f64).contains(&i);
        (inside(col) && inside(row)).then(|| (row as usize * grid.size + col as usize, flux))
    }

    /// This scene's render kept in its parts, for re-rendering scenes that differ
    /// from it in one part ([`LayeredRender::rerender`]).
    pub fn render_layered(&self, camera: &Camera) -> LayeredRender {
        let mut layers = LayeredRender {
            scene: self.clone(),
            camera: camera.clone(),
            source_x: Arc::default(),
            source_y: Arc::default(),
            lensed_source: Arc::default(),
            unlensed: Arc::default(),
        };
        layers.trace_rays();
        layers.shade_source();
        layers.shade_unlensed();
        layers
    }

    /// The noise-free image, taking fixed lenses' deflection from `fixed` where it applies.
    pub fn render_with(&self, camera: &Camera, fixed: Option<&DeflectionField>) -> Image {
        camera.psf.convolve(&self.render_unconvolved_with(camera, fixed), camera.grid.pixel_scale)
    }

    /// The noise-free image and the image of its first `smooth_lenses` lenses
    /// alone (the lens without its substructure), rendered in one pass.
    pub fn render_with_smooth(
        &self,
        camera: &Camera,
        fixed: Option<&DeflectionField>,
        smooth_lenses: usize,
    ) -> (Image, Image) {
        let (image, smooth) = self.render_unconvolved_split(camera, fixed, Some(smooth_lenses));
        let convolve = |i: &Image| camera.psf.convolve(i, camera.grid.pixel_scale);
        (convolve(&image), convolve(&smooth.expect("asked for")))
    }

    /// The noise-free image: lensed, pixelated and PSF-convolved.
    pub fn render(&self, camera: &Camera) -> Image {
        camera.psf.convolve(&self.render_unconvolved(camera), camera.grid.pixel_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::light::LightProfile;
    use crate::sim::mass::{PointMass, Sie};

    fn scene(lenses: Vec<MassModel>) -> Scene {
        Scene {
            lenses,
            deflection_scale: 1.0,
            source: Sersic { amp: 1.0, r_sersic: 0.2, n_sersic: 1.0, e1: 0.0, e2: 0.0, center_x: 0.0, center_y: 0.0 },
            lens_light: None,
            neighbour: None,
        }
    }

    #[test]
    fn prepared_deflectors_agree_with_the_profiles() {
        let lenses = vec![
            MassModel::Sie(Sie { theta_e: 1.1, e1: 0.1, e2: -0.05, center_x: 0.02, center_y: 0.0 }),
            MassModel::PointMass(PointMass { theta_e: 0.01, center_x: 0.5, center_y: 0.5 }),
            MassModel::PointMass(PointMass { theta_e: 0.02, center_x: -0.5, center_y: 0.3 }),
        ];
        let sc = scene(lenses);
        let camera = Camera { grid: PixelGrid { size: 16, pixel_scale: 0.2 }, supersampling: 1, psf: Psf::None };
        let img = sc.render(&camera);
        let g = camera.grid;
        for (row, col) in [(0, 0), (3, 7), (15, 2)] {
            let (bx, by) = sc.ray_shoot(g.coordinate(col), g.coordinate(row));
            let expected = sc.source.surface_brightness(bx, by) * g.pixel_area();
            assert!((img.pixels[row * 16 + col] - expected).abs() < 1e-12 * expected.max(1e-12));
        }
    }

    #[test]
    fn no_ray_is_nearer_a_point_than_nearest_ray_says() {
        for grid in [PixelGrid { size: 128, pixel_scale: 0.0505 }, PixelGrid { size: 15, pixel_scale: 0.2 }] {
            for (x, y) in [(0.0, 0.0), (0.013, -0.4), (1.2345, 2.0), (-9.0, 0.7), (40.0, -40.0)] {
                let brute = (0..grid.size)
                    .flat_map(|i| (0..grid.size).map(move |j| (i, j)))
                    .map(|(i, j)| (grid.coordinate(i) - x).hypot(grid.coordinate(j) - y))
                    .fold(f64::INFINITY, f64::min);
                assert!((nearest_ray(&grid, x, y) - brute).abs() < 1e-12, "({x}, {y}): {brute}");
            }
        }
    }

    #[test]
    fn the_smooth_image_rendered_alongside_is_the_smooth_scene_rendered_alone() {
        // sub_snr compares an image with its lens without substructure; both come
        // from one pass, and must be what two renders would give, to the bit.
        let main = MassModel::Sie(Sie { theta_e: 1.1, e1: 0.1, e2: -0.05, center_x: 0.02, center_y: 0.0 });
        let shear = MassModel::Shear(Shear { gamma1: 0.03, gamma2: -0.01 });
        let tnfw = MassModel::Tnfw(crate::sim::mass::Tnfw {
            rs: 0.05,
            alpha_rs: 0.002,
            r_trunc: 0.5,
            center_x: -0.4,
            center_y: 0.6,
        });
        let point = MassModel::PointMass(PointMass { theta_e: 0.02, center_x: 0.5, center_y: 0.5 });
        let mut full = scene(vec![main.clone(), shear.clone(), tnfw, point]);
        full.source.n_sersic = 2.3;
        full.lens_light =
            Some(Sersic { amp: 3.0, r_sersic: 0.6, n_sersic: 4.0, e1: 0.05, e2: 0.0, center_x: 0.01, center_y: 0.0 });
        let mut smooth = full.clone();
        smooth.lenses.truncate(2);
        let psf = Psf::Gaussian { fwhm: 0.3, truncation: 4.0 };
        let camera = Camera { grid: PixelGrid { size: 16, pixel_scale: 0.2 }, supersampling: 2, psf };
        let field = DeflectionField::new(&[main], &camera);
        for fixed in [None, Some(&field)] {
            let (image, alone) = full.render_with_smooth(&camera, fixed, 2);
            assert_eq!(image, full.render_with(&camera, fixed));
            assert_eq!(alone, smooth.render_with(&camera, fixed));
            assert_ne!(image, alone);
        }
    }

    #[test]
    fn a_layered_render_and_its_rerenders_are_the_scenes_renders_to_the_bit() {
        // A fit's Jacobian takes its images from rerenders; they must be the images
        // a plain render gives, or the fit would move with the way it was computed.
        let main = MassModel::Sie(Sie { theta_e: 1.1, e1: 0.1, e2: -0.05, center_x: 0.02, center_y: 0.0 });
        let shear = MassModel::Shear(Shear { gamma1: 0.03, gamma2: -0.01 });
        let point = MassModel::PointMass(PointMass { theta_e: 0.02, center_x: 0.5, center_y: 0.5 });
        let mut base = scene(vec![main, shear, point]);
        base.source.n_sersic = 2.3;
        base.lens_light =
            Some(Sersic { amp: 3.0, r_sersic: 0.6, n_sersic: 4.0, e1: 0.05, e2: 0.0, center_x: 0.01, center_y: 0.0 });
        let galaxy = Sersic { amp: 0.5, r_sersic: 0.3, n_sersic: 1.5, e1: 0.0, e2: 0.1, center_x: 1.2, center_y: -0.9 };
        base.neighbour = Some(Neighbour::Galaxy(galaxy));
        let psf = Psf::Gaussian { fwhm: 0.3, truncation: 4.0 };
        let camera = Camera { grid: PixelGrid { size: 16, pixel_scale: 0.2 }, supersampling: 2, psf };
        let layered = base.render_layered(&camera);
        assert_eq!(layered.image(), base.render_with(&camera, None));
        type Change<'a> = (&'a str, &'a dyn Fn(&mut Scene));
        let changed: [Change; 6] = [
            ("the lens", &|s| {
                s.lenses[0] = MassModel::Sie(Sie { theta_e: 1.2, e1: 0.0, e2: 0.0, center_x: 0.0, center_y: 0.0 })
            }),
            ("the deflection scale", &|s| s.deflection_scale = 0.9),
            ("the source", &|s| s.source.center_x = 0.07),
            ("the deflector's light", &|s| s.lens_light.as_mut().unwrap().r_sersic = 0.8),
            ("the neighbour", &|s| s.neighbour = Some(Neighbour::Star { flux: 40.0, x: 0.5, y: -0.3 })),
            ("nothing", &|_| ()),
        ];
        for (what, change) in changed {
            let mut next = base.clone();
            change(&mut next);
            let again = layered.rerender(&next);
            assert_eq!(again.scene(), &next);
            assert_eq!(again.image(), next.render_with(&camera, None), "{what} changed");
            if what != "nothing" {
                assert_ne!(again.image(), layered.image(), "{what} changed");
            }
        }
    }

    #[test]
    fn a_precomputed_field_gives_the_same_image_and_is_ignored_when_it_does_not_apply() {
        let main = MassModel::Sie(Sie { theta_e: 1.1, e1: 0.1, e2: -0.05, center_x: 0.02, center_y: 0.0 });
        let sub = MassModel::PointMass(PointMass { theta_e: 0.02, center_x: 0.5, center_y: 0.5 });
        let sc = scene(vec![main.clone(), sub]);
        let camera = Camera { grid: PixelGrid { size: 16, pixel_scale: 0.2 }, supersampling: 2, psf: Psf::None };
        let field = DeflectionField::new(&[main], &camera);
        let direct = sc.render(&camera);
        let cached = sc.render_with(&camera, Some(&field));
        for (a, b) in direct.pixels.iter().zip(&cached.pixels) {
            assert!((a - b).abs() <= 1e-14 * a.abs().max(1e-12));
        }
        let other = scene(vec![MassModel::Sie(Sie { theta_e: 0.9, e1: 0.0, e2: 0.0, center_x: 0.0, center_y: 0.0 })]);
        assert_eq!(other.render_with(&camera, Some(&field)), other.render(&camera));
    }

    #[test]
    fn the_point_mass_row_kernel_matches_the_profile() {
        let masses: Vec<PointMass> = (0..7)
            .map(|i| PointMass {
                theta_e: 0.01 * (i + 1) as f64,
                center_x: 0.3 * i as f64 - 1.0,
                center_y: 0.1 * i as f64,
            })
            .collect();
        let models: Vec<MassModel> = masses.iter().cloned().map(MassModel::PointMass).collect();
        let grid = PixelGrid { size: 40, pixel_scale: 0.1 };
        let deflector = Deflector::prepare(&models, &grid).pop().unwrap();
        let xs: Vec<f64> = (0..37).map(|i| -1.8 + 0.1 * i as f64).collect();
        let y = 0.23;
        let (mut ax, mut ay) = (vec![0.0; 37], vec![0.0; 37]);
        deflector.accumulate_row(&xs, y, &mut ax, &mut ay);
        for (i, &x) in xs.iter().enumerate() {
            let (ex, ey) = masses.iter().fold((0.0, 0.0), |(a, b), m| {
                let (dx, dy) = m.deflection(x, y);
                (a + dx, b + dy)
            });
            for (got, want) in [(ax[i], ex), (ay[i], ey)] {
                assert!((got - want).abs() <= 1e-12 * want.abs().max(1e-6), "{i}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn supersampling_converges_to_the_pixel_integral() {
        let sc = scene(vec![]);
        let grid = PixelGrid { size: 64, pixel_scale: 0.05 };
        let flux = |s| {
            let img = sc.render(&Camera { grid, supersampling: s, psf: Psf::None });
            img.pixels.iter().sum::<f64>()
        };
        let total = sc.source.total_flux_per_amp();
        assert!((flux(5) - total).abs() / total < 2e-3, "{} {}", flux(5), total);
    }
}
