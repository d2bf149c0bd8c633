//! Training-time augmentation by the symmetries of the square.
//!
//! A lensing image's class does not change when the sky is rotated by 90 degrees
//! or mirrored, and the simulators draw orientations at random, so the eight
//! dihedral transforms give eight equally valid views of each training image at
//! no cost in realism.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which augmentation training applies to each image of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Augment {
    /// Images as stored.
    None,
    /// One of the 8 rotations/reflections of the square, drawn per image.
    #[default]
    Dihedral,
}

/// Writes dihedral transform `k` (0..8) of the `size x size` image `src` into
/// `dst`: `k & 3` quarter turns counter-clockwise, then a left-right mirror if
/// `k & 4`. Transform 0 is the identity.
pub fn dihedral(src: &[f32], size: usize, k: u8, dst: &mut [f32]) {
    assert_eq!(src.len(), size * size);
    assert_eq!(dst.len(), size * size);
    let last = size - 1;
    for r in 0..size {
        for c in 0..size {
            let c_in = if k & 4 != 0 { last - c } else { c };
            // Pixel (r, c) of a quarter turn CCW comes from (c, last - r) of its input.
            let (mut rr, mut cc) = (r, c_in);
            for _ in 0..(k & 3) {
                (rr, cc) = (cc, last - rr);
            }
            dst[r * size + c] = src[rr * size + cc];
        }
    }
}

/// Applies `augment` to every image of `pixels` (images of `size x size`) in
/// place, drawing the transforms from `rng`.
pub fn augment_images(pixels: &mut [f32], size: usize, augment: Augment, rng: &mut impl Rng) {
    if augment == Augment::None {
        return;
    }
    let mut scratch = vec![0f32; size * size];
    for image in pixels.chunks_exact_mut(size * size) {
        let k = rng.random_range(0..8u8);
        if k != 0 {
            dihedral(image, size, k, &mut scratch);
            image.copy_from_slice(&scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(img: &[f32], k: u8) -> Vec<f32> {
        let size = (img.len() as f64).sqrt() as usize;
        let mut out = vec![0.0; img.len()];
        dihedral(img, size, k, &mut out);
        out
    }

    #[test]
    fn the_eight_transforms_are_distinct_and_form_the_group() {
        let img: Vec<f32> = (0..12).map(|v| v as f32).chain([0.0; 4]).collect(); // 4x4, asymmetric
        let views: Vec<Vec<f32>> = (0..8).map(|k| apply(&img, k)).collect();
        assert_eq!(views[0], img);
        for a in 0..8 {
            for b in a + 1..8 {
                assert_ne!(views[a], views[b], "transforms {a} and {b} coincide");
            }
        }
        // A quarter turn four times is the identity; a mirror twice is too.
        let mut x = img.clone();
        for _ in 0..4 {
            x = apply(&x, 1);
        }
        assert_eq!(x, img);
        assert_eq!(apply(&apply(&img, 4), 4), img);
        // Quarter turn counter-clockwise: the top row becomes the left column, reversed.
        let turned = apply(&[1.0, 2.0, 3.0, 4.0], 1);
        assert_eq!(turned, vec![2.0, 4.0, 1.0, 3.0]);
    }
}
