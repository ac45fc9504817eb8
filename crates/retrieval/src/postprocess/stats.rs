//! The numeric definitions of the Java appliance's post-processors, as Apache
//! commons-math 3 computes them (the Java appliance's math library), written here because
//! the exact update formulas decide the last bits of every result:
//!
//! * [`Moments`] — `SummaryStatistics`: the incremental mean (`FirstMoment`), second
//!   moment (`SecondMoment`), sample and population variance, min and max (a NaN never
//!   replaces a number, a number replaces a NaN).
//! * [`percentile_legacy`] — `Percentile` with `EstimationType.LEGACY`, the estimator
//!   of `DescriptiveStatistics.getPercentile`: position `p(n+1)/100`, linear
//!   interpolation between the neighbours, clamped to the ends.
//! * [`kurtosis`], [`skewness`] — `DescriptiveStatistics.getKurtosis()/getSkewness()`
//!   (bias-corrected; NaN below 4 and 3 values).
//! * [`linear_at`] — `LinearInterpolator` evaluated at a point; [`loess_at`] —
//!   `LoessInterpolator` (bandwidth 0.3, 2 robustness iterations, accuracy 1e-12) then
//!   `SplineInterpolator` (natural cubic spline) evaluated at a point. Both `None` where
//!   commons-math throws (too few points, the point outside the knots, unordered x).

/// commons-math `SummaryStatistics` restricted to what the post-processors read.
#[derive(Debug, Clone, Copy)]
pub struct Moments {
    n: u64,
    m1: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            n: 0,
            m1: f64::NAN,
            m2: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        }
    }
}

impl Moments {
    /// Adds a value (`SummaryStatistics.addValue`).
    #[inline]
    pub fn add(&mut self, d: f64) {
        if self.n == 0 {
            self.m1 = 0.0;
            self.m2 = 0.0;
        }
        self.n += 1;
        let dev = d - self.m1;
        let n_dev = dev / self.n as f64;
        self.m1 += n_dev;
        self.m2 += (self.n as f64 - 1.0) * dev * n_dev;
        if d < self.min || self.min.is_nan() {
            self.min = d;
        }
        if d > self.max || self.max.is_nan() {
            self.max = d;
        }
    }

    /// Adds a value unless it is NaN (the post-processors' statistics ignore NaN).
    #[inline]
    pub fn add_number(&mut self, d: f64) {
        if !d.is_nan() {
            self.add(d);
        }
    }

    /// Values added.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The mean; NaN when empty.
    pub fn mean(&self) -> f64 {
        self.m1
    }

    /// The sample variance (n − 1); 0 for one value, NaN when empty.
    pub fn variance(&self) -> f64 {
        match self.n {
            0 => f64::NAN,
            1 => 0.0,
            n => self.m2 / (n as f64 - 1.0),
        }
    }

    /// The population variance (n); 0 for one value, NaN when empty.
    pub fn population_variance(&self) -> f64 {
        match self.n {
            0 => f64::NAN,
            1 => 0.0,
            n => self.m2 / n as f64,
        }
    }

    /// The sample standard deviation; 0 for one value, NaN when empty.
    pub fn std(&self) -> f64 {
        match self.n {
            0 => f64::NAN,
            1 => 0.0,
            _ => self.variance().sqrt(),
        }
    }

    /// The smallest value; NaN when empty.
    pub fn min(&self) -> f64 {
        self.min
    }

    /// The largest value; NaN when empty.
    pub fn max(&self) -> f64 {
        self.max
    }
}

/// `Percentile.evaluate(values, p)` with the legacy estimator; sorts `values` in place.
/// NaN when empty.
pub fn percentile_legacy(values: &mut [f64], p: f64) -> f64 {
    let n = values.len();
    match n {
        0 => return f64::NAN,
        1 => return values[0],
        _ => {}
    }
    values.sort_unstable_by(f64::total_cmp);
    let pos = p * (n as f64 + 1.0) / 100.0;
    let fpos = pos.floor();
    let dif = pos - fpos;
    if pos < 1.0 {
        return values[0];
    }
    if pos >= n as f64 {
        return values[n - 1];
    }
    let int_pos = fpos as usize;
    let lower = values[int_pos - 1];
    let upper = values[int_pos];
    lower + dif * (upper - lower)
}

/// commons-math `Mean.evaluate`: the sum divided by n, corrected by the mean deviation.
fn two_pass_mean(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let xbar = values.iter().sum::<f64>() / n;
    let correction: f64 = values.iter().map(|v| v - xbar).sum();
    xbar + correction / n
}

/// `Kurtosis.evaluate`: bias-corrected excess kurtosis; NaN for fewer than 4 values.
pub fn kurtosis(values: &[f64]) -> f64 {
    let len = values.len();
    if len <= 3 {
        return f64::NAN;
    }
    let mut m = Moments::default();
    values.iter().for_each(|&v| m.add(v));
    let mean = m.mean();
    let std = m.variance().sqrt();
    let mut accum3: f64 = values.iter().map(|v| (v - mean).powf(4.0)).sum();
    accum3 /= std.powf(4.0);
    let n0 = len as f64;
    let coefficient_one = (n0 * (n0 + 1.0)) / ((n0 - 1.0) * (n0 - 2.0) * (n0 - 3.0));
    let term_two = (3.0 * (n0 - 1.0).powf(2.0)) / ((n0 - 2.0) * (n0 - 3.0));
    coefficient_one * accum3 - term_two
}

/// `Skewness.evaluate`: bias-corrected skewness; NaN for fewer than 3 values.
pub fn skewness(values: &[f64]) -> f64 {
    let len = values.len();
    if len <= 2 {
        return f64::NAN;
    }
    let m = two_pass_mean(values);
    let (mut accum, mut accum2) = (0.0, 0.0);
    for v in values {
        let d = v - m;
        accum += d * d;
        accum2 += d;
    }
    let variance = (accum - (accum2 * accum2 / len as f64)) / (len as f64 - 1.0);
    let mut accum3: f64 = values.iter().map(|v| (v - m) * (v - m) * (v - m)).sum();
    accum3 /= variance * variance.sqrt();
    let n0 = len as f64;
    (n0 / ((n0 - 1.0) * (n0 - 2.0))) * accum3
}

/// True when `xs` is strictly increasing (commons-math `MathArrays.checkOrder`).
fn strictly_increasing(xs: &[f64]) -> bool {
    xs.windows(2).all(|w| w[0] < w[1])
}

/// Evaluates a piecewise function with knots `xs` at `x`: the index of the segment
/// (`PolynomialSplineFunction.value`: outside `[x0, xn]` is an error).
fn segment(xs: &[f64], x: f64) -> Option<usize> {
    let n = xs.len();
    if n < 2 || !(x >= xs[0] && x <= xs[n - 1]) {
        return None;
    }
    // Java: binarySearch; an exact knot selects the segment starting there, the last knot
    // the last segment.
    let i = match xs.binary_search_by(|k| k.total_cmp(&x)) {
        Ok(i) => i,
        Err(i) => i - 1,
    };
    Some(i.min(n - 2))
}

/// `LinearInterpolator.interpolate(xs, ys).value(x)`; `None` where commons-math throws
/// (fewer than 2 points, x not strictly increasing, `x` outside the knots).
pub fn linear_at(xs: &[f64], ys: &[f64], x: f64) -> Option<f64> {
    if xs.len() < 2 || xs.len() != ys.len() || !strictly_increasing(xs) {
        return None;
    }
    let i = segment(xs, x)?;
    let slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]);
    Some(ys[i] + slope * (x - xs[i]))
}

/// `SplineInterpolator.interpolate(xs, ys).value(x)`: a natural cubic spline; `None` for
/// fewer than 3 points or `x` outside the knots.
fn spline_at(xs: &[f64], ys: &[f64], x: f64) -> Option<f64> {
    let n = xs.len() - 1;
    if xs.len() < 3 || !strictly_increasing(xs) {
        return None;
    }
    let h: Vec<f64> = (0..n).map(|i| xs[i + 1] - xs[i]).collect();
    let mut mu = vec![0.0; n];
    let mut z = vec![0.0; n + 1];
    for i in 1..n {
        let g = 2.0 * (xs[i + 1] - xs[i - 1]) - h[i - 1] * mu[i - 1];
        mu[i] = h[i] / g;
        z[i] = (3.0 * (ys[i + 1] * h[i - 1] - ys[i] * (xs[i + 1] - xs[i - 1]) + ys[i - 1] * h[i])
            / (h[i - 1] * h[i])
            - h[i - 1] * z[i - 1])
            / g;
    }
    let mut b = vec![0.0; n];
    let mut c = vec![0.0; n + 1];
    let mut d = vec![0.0; n];
    for j in (0..n).rev() {
        c[j] = z[j] - mu[j] * c[j + 1];
        b[j] = (ys[j + 1] - ys[j]) / h[j] - h[j] * (c[j + 1] + 2.0 * c[j]) / 3.0;
        d[j] = (c[j + 1] - c[j]) / (3.0 * h[j]);
    }
    let i = segment(xs, x)?;
    let t = x - xs[i];
    Some(ys[i] + t * (b[i] + t * (c[i] + t * d[i])))
}

/// commons-math `LoessInterpolator.smooth` with its defaults (bandwidth 0.3, 2
/// robustness iterations, accuracy 1e-12, unit weights); `None` where it throws.
fn loess_smooth(xs: &[f64], ys: &[f64]) -> Option<Vec<f64>> {
    const BANDWIDTH: f64 = 0.3;
    const ROBUSTNESS_ITERS: usize = 2;
    const ACCURACY: f64 = 1e-12;
    let n = xs.len();
    if n == 0 || xs.len() != ys.len() || !strictly_increasing(xs) {
        return None;
    }
    if n == 1 || n == 2 {
        return Some(ys.to_vec());
    }
    let bandwidth_in_points = (BANDWIDTH * n as f64) as usize;
    if bandwidth_in_points < 2 {
        return None;
    }
    let mut res = vec![0.0; n];
    let mut residuals = vec![0.0; n];
    let mut sorted_residuals = vec![0.0; n];
    let mut robustness = vec![1.0; n];
    for iter in 0..=ROBUSTNESS_ITERS {
        let mut interval = [0usize, bandwidth_in_points - 1];
        for i in 0..n {
            let x = xs[i];
            if i > 0 {
                update_bandwidth_interval(xs, i, &mut interval);
            }
            let (ileft, iright) = (interval[0], interval[1]);
            let edge = if xs[i] - xs[ileft] > xs[iright] - xs[i] {
                ileft
            } else {
                iright
            };
            let (mut sum_w, mut sum_x, mut sum_x2, mut sum_y, mut sum_xy) =
                (0.0, 0.0, 0.0, 0.0, 0.0);
            let denom = (1.0 / (xs[edge] - x)).abs();
            for k in ileft..=iright {
                let xk = xs[k];
                let yk = ys[k];
                let dist = if k < i { x - xk } else { xk - x };
                let w = tricube(dist * denom) * robustness[k];
                let xkw = xk * w;
                sum_w += w;
                sum_x += xkw;
                sum_x2 += xk * xkw;
                sum_y += yk * w;
                sum_xy += yk * xkw;
            }
            let mean_x = sum_x / sum_w;
            let mean_y = sum_y / sum_w;
            let mean_xy = sum_xy / sum_w;
            let mean_x_sq = sum_x2 / sum_w;
            let beta = if (mean_x_sq - mean_x * mean_x).abs().sqrt() < ACCURACY {
                0.0
            } else {
                (mean_xy - mean_x * mean_y) / (mean_x_sq - mean_x * mean_x)
            };
            let alpha = mean_y - beta * mean_x;
            res[i] = beta * x + alpha;
            residuals[i] = (ys[i] - res[i]).abs();
        }
        if iter == ROBUSTNESS_ITERS {
            break;
        }
        sorted_residuals.copy_from_slice(&residuals);
        sorted_residuals.sort_unstable_by(f64::total_cmp);
        let median_residual = sorted_residuals[n / 2];
        if median_residual.abs() < ACCURACY {
            break;
        }
        for i in 0..n {
            let arg = residuals[i] / (6.0 * median_residual);
            robustness[i] = if arg >= 1.0 {
                0.0
            } else {
                let w = 1.0 - arg * arg;
                w * w
            };
        }
    }
    Some(res)
}

/// commons-math `LoessInterpolator.updateBandwidthInterval` with the unit input weights
/// of `interpolate` (the next non-zero weight is always the next point).
fn update_bandwidth_interval(xs: &[f64], i: usize, interval: &mut [usize; 2]) {
    let (left, right) = (interval[0], interval[1]);
    let next_right = right + 1;
    if next_right < xs.len() && xs[next_right] - xs[i] < xs[i] - xs[left] {
        interval[0] = left + 1;
        interval[1] = next_right;
    }
}

fn tricube(x: f64) -> f64 {
    let a = x.abs();
    if a >= 1.0 {
        return 0.0;
    }
    let t = 1.0 - a * a * a;
    t * t * t
}

/// `LoessInterpolator().interpolate(xs, ys).value(x)`; `None` where commons-math throws.
pub fn loess_at(xs: &[f64], ys: &[f64], x: f64) -> Option<f64> {
    let smoothed = loess_smooth(xs, ys)?;
    spline_at(xs, &smoothed, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 100 Matlab-generated values of the Java `VariousPostProcessorTest` are not in
    /// the reference; these check the formulas against hand-computed values instead.
    #[test]
    fn moments_as_summary_statistics() {
        let mut m = Moments::default();
        assert!(m.mean().is_nan() && m.std().is_nan() && m.min().is_nan());
        m.add(2.0);
        assert_eq!((m.mean(), m.std(), m.variance()), (2.0, 0.0, 0.0));
        for v in [4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            m.add(v);
        }
        assert_eq!(m.n(), 8);
        assert_eq!(m.mean(), 5.0);
        assert!((m.population_variance() - 4.0).abs() < 1e-12);
        assert!((m.variance() - 32.0 / 7.0).abs() < 1e-12);
        assert!((m.std() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!((m.min(), m.max()), (2.0, 9.0));
    }

    #[test]
    fn legacy_median() {
        assert!(percentile_legacy(&mut [], 50.0).is_nan());
        assert_eq!(percentile_legacy(&mut [3.0], 50.0), 3.0);
        assert_eq!(percentile_legacy(&mut [3.0, 1.0, 2.0], 50.0), 2.0);
        // pos = 50·5/100 = 2.5: halfway between the 2nd and 3rd.
        assert_eq!(percentile_legacy(&mut [4.0, 1.0, 3.0, 2.0], 50.0), 2.5);
        // Legacy, not the "R-7" estimator: p = 25 of 1..4 is at 1.25 → 1.25.
        assert_eq!(percentile_legacy(&mut [4.0, 1.0, 3.0, 2.0], 25.0), 1.25);
        assert_eq!(percentile_legacy(&mut [4.0, 1.0], 10.0), 1.0);
    }

    #[test]
    fn bias_corrected_shape() {
        assert!(kurtosis(&[1.0, 2.0, 3.0]).is_nan());
        assert!(skewness(&[1.0, 2.0]).is_nan());
        // Symmetric data: no skew.
        assert!(skewness(&[1.0, 2.0, 3.0, 4.0, 5.0]).abs() < 1e-12);
        // KURT of 1..5: 1.25 · 34/6.25 − 8 = −1.2.
        assert!((kurtosis(&[1.0, 2.0, 3.0, 4.0, 5.0]) + 1.2).abs() < 1e-12);
        // SKEW of {1,2,3,10}: (4/6) · 180 / (50/3)^1.5.
        let s = skewness(&[1.0, 2.0, 3.0, 10.0]);
        let expected = (4.0 / 6.0) * 180.0 / (50.0f64 / 3.0).powf(1.5);
        assert!((s - expected).abs() < 1e-12, "{s}");
        assert!((s - 1.763_633).abs() < 1e-6, "{s}");
    }

    #[test]
    fn interpolation() {
        let xs = [0.0, 10.0, 20.0];
        let ys = [0.0, 10.0, 0.0];
        assert_eq!(linear_at(&xs, &ys, 5.0), Some(5.0));
        assert_eq!(linear_at(&xs, &ys, 15.0), Some(5.0));
        assert_eq!(linear_at(&xs, &ys, 20.0), Some(0.0));
        assert_eq!(linear_at(&xs, &ys, 21.0), None);
        assert_eq!(linear_at(&xs[..1], &ys[..1], 0.0), None);
        // A natural spline through a line is the line.
        let xs: Vec<f64> = (0..10).map(f64::from).collect();
        let ys: Vec<f64> = xs.iter().map(|x| 2.0 * x + 1.0).collect();
        let v = loess_at(&xs, &ys, 4.5).expect("loess");
        assert!((v - 10.0).abs() < 1e-9, "{v}");
        // Too few points for the bandwidth: commons-math throws.
        assert_eq!(loess_at(&xs[..5], &ys[..5], 2.0), None);
    }
}
