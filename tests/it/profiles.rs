//! Every mass profile, checked against itself: the deflection is the gradient of
//! the potential and the Hessian the derivative of the deflection. The match is
//! exhaustive, so a new profile cannot be added without sample parameters here.

use lensmae::sim::mass::{MassModel, MassProfile, Nfw, PointMass, Shear, Sie, Sis, Tnfw};

fn samples() -> Vec<MassModel> {
    let all = [
        MassModel::Sis(Sis { theta_e: 1.1, center_x: 0.1, center_y: -0.2 }),
        MassModel::Sie(Sie { theta_e: 1.2, e1: 0.15, e2: -0.1, center_x: 0.05, center_y: 0.02 }),
        MassModel::Shear(Shear { gamma1: 0.05, gamma2: -0.03 }),
        MassModel::PointMass(PointMass { theta_e: 0.3, center_x: 0.4, center_y: 0.1 }),
        MassModel::Nfw(Nfw { rs: 0.5, alpha_rs: 0.2, center_x: -0.1, center_y: 0.2 }),
        MassModel::Tnfw(Tnfw { rs: 0.5, alpha_rs: 0.2, r_trunc: 1.5, center_x: -0.1, center_y: 0.2 }),
    ];
    // Exhaustive: adding a variant to MassModel fails to compile until it is sampled above.
    for m in &all {
        match m {
            MassModel::Sis(_)
            | MassModel::Sie(_)
            | MassModel::Shear(_)
            | MassModel::PointMass(_)
            | MassModel::Nfw(_)
            | MassModel::Tnfw(_) => {}
        }
    }
    all.to_vec()
}

const POINTS: [(f64, f64); 6] = [(0.7, 0.3), (-1.3, 0.9), (0.2, -1.6), (2.4, 1.1), (-0.45, -0.38), (1.05, -0.02)];

#[test]
fn deflection_is_the_gradient_of_the_potential() {
    let h = 1e-5;
    for m in samples() {
        for &(x, y) in &POINTS {
            let (ax, ay) = m.deflection(x, y);
            let gx = (m.potential(x + h, y) - m.potential(x - h, y)) / (2.0 * h);
            let gy = (m.potential(x, y + h) - m.potential(x, y - h)) / (2.0 * h);
            assert!((ax - gx).abs() < 1e-6 && (ay - gy).abs() < 1e-6, "{m:?} at {x},{y}: ({ax},{ay}) vs ({gx},{gy})");
        }
    }
}

#[test]
fn hessian_is_the_derivative_of_the_deflection() {
    let h = 1e-5;
    for m in samples() {
        for &(x, y) in &POINTS {
            let hess = m.hessian(x, y);
            let (axp, ayp) = m.deflection(x + h, y);
            let (axm, aym) = m.deflection(x - h, y);
            let (bxp, byp) = m.deflection(x, y + h);
            let (bxm, bym) = m.deflection(x, y - h);
            let xx = (axp - axm) / (2.0 * h);
            let yx = (ayp - aym) / (2.0 * h);
            let xy = (bxp - bxm) / (2.0 * h);
            let yy = (byp - bym) / (2.0 * h);
            for (mine, fd) in [(hess.xx, xx), (hess.xy, xy), (hess.xy, yx), (hess.yy, yy)] {
                assert!((mine - fd).abs() < 1e-6, "{m:?} at {x},{y}: {mine} vs {fd}");
            }
        }
    }
}
