//! Video analytics (paper Fig. 11, a modified ORION pipeline):
//! `video_split` → Map(`video_extract` → `image_process`) → FanIn → `classify`.
//!
//! The video is synthetic and deterministic: 64×64 grayscale frames, cut into *scenes* of 6–18
//! frames; each scene shows one shape — a circle, a square, a triangle or a cross — of random
//! size, orientation, brightness and contrast, moving (bouncing off the borders) and slowly
//! turning over a noisy gradient background. The ground truth of every frame is therefore known ([`ground_truth`]).
//!
//! * `video_split` cuts the frame range into `fanout` chunks (descriptors: seed, frame range).
//! * `video_extract` renders its chunk's frames and keeps the key frames: the chunk's first frame,
//!   every scene cut (a jump in the 8×8-block means between consecutive frames) and every
//!   `keyframe_interval`-th frame after the last key frame. Key frames travel as base64 pixels
//!   (4 KiB each, about 5.5 KB encoded).
//! * `image_process` runs a Gaussian blur, Sobel edges, finds the object's bounding box, and
//!   resamples the edge map inside it to a 16×16 feature vector ([`features`]).
//! * `classify` runs a 256→64→4 multilayer perceptron ([`classifier`]) whose parameters ship in
//!   `data/video_classifier.bin` and returns one label per key frame plus a summary.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use joint_core::machine::FnError;
use joint_core::workflow::Workflow;
use joint_shim::{Handlers, fn_error, handler_fn};
use serde_json::{Value, json};

use super::rng::{Rng, mix};
use super::{cpu, field_u64, jround, list, load_shipped, object, or_defaults};

/// Frame width in pixels.
pub const WIDTH: usize = 64;
/// Frame height in pixels.
pub const HEIGHT: usize = 64;
/// Side of the feature grid: features are `GRID × GRID` edge strengths.
pub const GRID: usize = 16;
/// Length of a feature vector.
pub const FEATURES: usize = GRID * GRID;
/// The shape classes, in the classifier's output order.
pub const CLASSES: [&str; 4] = ["circle", "square", "triangle", "cross"];
/// Default distance between periodic key frames.
pub const KEYFRAME_INTERVAL: u64 = 6;
/// Largest accepted video, in frames.
pub const MAX_FRAMES: u64 = 100_000;
/// A scene cut: mean absolute difference of the 8×8-block means of two consecutive frames above
/// this (gray levels).
const CUT_THRESHOLD: f32 = 10.0;
/// Pixel noise amplitude (uniform ± this many gray levels).
const NOISE: f64 = 16.0;

const SCENE_TAG: u64 = 0x5C3E;
const NOISE_TAG: u64 = 0x401E;

/// The definition (`examples/paper/video-analytics.yaml`).
pub const DEFINITION: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/paper/video-analytics.yaml"
));

/// The video analytics workflow: `video_split`, `video_extract`, `image_process` on `aws`,
/// `classify` on `aliyun`. The fan-out is the input's `fanout`.
pub fn video_analytics() -> Workflow {
    load_shipped("video-analytics.yaml", DEFINITION)
}

/// The input of [`video_analytics`]: a video of `frames` frames generated from `seed`, cut into
/// `fanout` chunks. The paper's 1-minute video at 4 frames/s is `frames = 240`.
pub fn video_input(fanout: u32, frames: u32, seed: u64) -> Value {
    json!({"fanout": fanout, "frames": frames, "seed": seed})
}

/// One scene of the synthetic video.
#[derive(Debug, Clone)]
struct Scene {
    start: u64,
    len: u64,
    class: usize,
    r: f64,
    x0: f64,
    y0: f64,
    vx: f64,
    vy: f64,
    bg: f64,
    grad: f64,
    fg: f64,
    angle: f64,
    spin: f64,
}

impl Scene {
    fn generate(seed: u64, k: u64, start: u64) -> Scene {
        let mut rng = Rng::for_stream(&[seed, k, SCENE_TAG]);
        let len = 6 + rng.below(13);
        let class = rng.below(CLASSES.len() as u64) as usize;
        let r = rng.range_f64(8.0, 15.0);
        let lo = r + 1.0;
        let hi = WIDTH as f64 - r - 1.0;
        let x0 = rng.range_f64(lo, hi);
        let y0 = rng.range_f64(lo, hi);
        let vx = rng.range_f64(-1.5, 1.5);
        let vy = rng.range_f64(-1.5, 1.5);
        let bg = rng.range_f64(30.0, 110.0);
        let grad = rng.range_f64(-25.0, 25.0);
        let contrast = rng.range_f64(70.0, 130.0);
        let fg = if rng.below(2) == 0 && bg - contrast >= 0.0 {
            bg - contrast
        } else {
            bg + contrast
        };
        let angle = rng.range_f64(0.0, std::f64::consts::TAU);
        let spin = rng.range_f64(-0.06, 0.06);
        Scene {
            start,
            len,
            class,
            r,
            x0,
            y0,
            vx,
            vy,
            bg,
            grad,
            fg,
            angle,
            spin,
        }
    }

    /// The shape's centre at `frame`: linear motion folded back at the borders.
    fn centre(&self, frame: u64) -> (f64, f64) {
        let t = (frame - self.start) as f64;
        let lo = self.r + 1.0;
        let hi = WIDTH as f64 - self.r - 1.0;
        (
            fold(self.x0 + self.vx * t, lo, hi),
            fold(self.y0 + self.vy * t, lo, hi),
        )
    }

    /// Whether the point at offset `(dx, dy)` from the centre is inside the shape at `frame`
    /// (the shape turns by `spin` radians per frame).
    fn inside(&self, frame: u64, dx: f64, dy: f64) -> bool {
        let a = self.angle + self.spin * (frame - self.start) as f64;
        let (s, c) = a.sin_cos();
        let (dx, dy) = (c * dx + s * dy, -s * dx + c * dy);
        let r = self.r;
        match self.class {
            0 => dx * dx + dy * dy <= r * r,
            1 => dx.abs() <= 0.85 * r && dy.abs() <= 0.85 * r,
            2 => (-r..=r).contains(&dy) && dx.abs() <= (dy + r) * 0.5,
            _ => {
                let arm = r / 3.0;
                (dx.abs() <= r && dy.abs() <= arm) || (dy.abs() <= r && dx.abs() <= arm)
            }
        }
    }
}

/// Reflect `x` into `[lo, hi]` (a bouncing motion).
fn fold(x: f64, lo: f64, hi: f64) -> f64 {
    let span = hi - lo;
    if span <= 0.0 {
        return lo;
    }
    let y = (x - lo).rem_euclid(2.0 * span);
    lo + if y > span { 2.0 * span - y } else { y }
}

/// The scenes of video `seed` covering frames `0..end`.
fn scenes(seed: u64, end: u64) -> Vec<Scene> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut k = 0;
    while start < end.max(1) {
        let s = Scene::generate(seed, k, start);
        start += s.len;
        k += 1;
        out.push(s);
    }
    out
}

fn scene_of(scenes: &[Scene], frame: u64) -> &Scene {
    let i = scenes.partition_point(|s| s.start + s.len <= frame);
    &scenes[i.min(scenes.len() - 1)]
}

fn render_in(scene: &Scene, seed: u64, frame: u64) -> Vec<u8> {
    let mut rng = Rng::for_stream(&[seed, frame, NOISE_TAG]);
    let (cx, cy) = scene.centre(frame);
    let mut px = Vec::with_capacity(WIDTH * HEIGHT);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let dx = x as f64 + 0.5 - cx;
            let dy = y as f64 + 0.5 - cy;
            let base = if scene.inside(frame, dx, dy) {
                scene.fg
            } else {
                scene.bg + scene.grad * (x as f64 / (WIDTH - 1) as f64 - 0.5)
            };
            let v = base + (rng.f64() * 2.0 - 1.0) * NOISE;
            px.push(v.round().clamp(0.0, 255.0) as u8);
        }
    }
    px
}

/// Frame `frame` of video `seed`: `WIDTH × HEIGHT` gray levels, row by row.
pub fn render_frame(seed: u64, frame: u64) -> Vec<u8> {
    let sc = scenes(seed, frame + 1);
    render_in(scene_of(&sc, frame), seed, frame)
}

/// The class (index into [`CLASSES`]) of the shape shown in frame `frame` of video `seed`.
pub fn ground_truth(seed: u64, frame: u64) -> usize {
    let sc = scenes(seed, frame + 1);
    scene_of(&sc, frame).class
}

/// Means of the 8×8 blocks of a frame (for scene-cut detection).
fn block_means(px: &[u8]) -> Vec<f32> {
    let (bw, bh) = (WIDTH / 8, HEIGHT / 8);
    let mut out = vec![0f32; bw * bh];
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            out[(y / 8) * bw + x / 8] += px[y * WIDTH + x] as f32;
        }
    }
    out.iter_mut().for_each(|v| *v /= 64.0);
    out
}

/// The key frames of `start..end` of video `seed` with their pixels.
fn key_frames(seed: u64, start: u64, end: u64, interval: u64) -> Vec<(u64, Vec<u8>)> {
    let sc = scenes(seed, end);
    let mut keys = Vec::new();
    let mut prev: Option<Vec<f32>> = None;
    let mut last_key = start;
    for f in start..end {
        let px = render_in(scene_of(&sc, f), seed, f);
        let means = block_means(&px);
        let cut = prev.as_ref().is_some_and(|p| {
            let d: f32 = p.iter().zip(&means).map(|(a, b)| (a - b).abs()).sum();
            d / means.len() as f32 > CUT_THRESHOLD
        });
        if f == start || cut || f - last_key >= interval {
            keys.push((f, px));
            last_key = f;
        }
        prev = Some(means);
    }
    keys
}

fn blur(img: &[f32]) -> Vec<f32> {
    const K: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];
    let at = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0f32; img.len()];
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            tmp[y * WIDTH + x] = K
                .iter()
                .enumerate()
                .map(|(k, w)| w * img[y * WIDTH + at(x as isize + k as isize - 2, WIDTH)])
                .sum();
        }
    }
    let mut out = vec![0f32; img.len()];
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            out[y * WIDTH + x] = K
                .iter()
                .enumerate()
                .map(|(k, w)| w * tmp[at(y as isize + k as isize - 2, HEIGHT) * WIDTH + x])
                .sum();
        }
    }
    out
}

fn sobel(img: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; img.len()];
    let p = |x: usize, y: usize| img[y * WIDTH + x];
    for y in 1..HEIGHT - 1 {
        for x in 1..WIDTH - 1 {
            let gx = (p(x + 1, y - 1) + 2.0 * p(x + 1, y) + p(x + 1, y + 1))
                - (p(x - 1, y - 1) + 2.0 * p(x - 1, y) + p(x - 1, y + 1));
            let gy = (p(x - 1, y + 1) + 2.0 * p(x, y + 1) + p(x + 1, y + 1))
                - (p(x - 1, y - 1) + 2.0 * p(x, y - 1) + p(x + 1, y - 1));
            out[y * WIDTH + x] = (gx * gx + gy * gy).sqrt();
        }
    }
    out
}

/// The feature vector of a frame: Gaussian blur (5×5 binomial), Sobel gradient magnitude, the
/// bounding box of the strong edges (≥ 35% of the strongest) made square and padded by 2 pixels,
/// the edge map inside it resampled (2×2 bilinear samples per cell) to `GRID × GRID`, scaled to a
/// maximum of 1 and rounded to 3 decimals. Translation- and scale-invariant, so a small classifier
/// can tell the shapes apart.
pub fn features(pixels: &[u8]) -> Vec<f32> {
    debug_assert_eq!(pixels.len(), WIDTH * HEIGHT);
    let img: Vec<f32> = pixels.iter().map(|&v| v as f32).collect();
    let mag = sobel(&blur(&img));
    let max = mag.iter().copied().fold(0f32, f32::max);
    if max <= 1e-6 {
        return vec![0.0; FEATURES];
    }
    let t = 0.35 * max;
    let (mut x0, mut y0, mut x1, mut y1) = (WIDTH, HEIGHT, 0, 0);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            if mag[y * WIDTH + x] >= t {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    let side = ((x1 - x0).max(y1 - y0) + 1) as f32 + 4.0;
    let cx = (x0 + x1) as f32 / 2.0;
    let cy = (y0 + y1) as f32 / 2.0;
    let (bx, by) = (cx - side / 2.0 + 0.5, cy - side / 2.0 + 0.5);
    let sample = |x: f32, y: f32| -> f32 {
        let (fx, fy) = (x.floor(), y.floor());
        let (ax, ay) = (x - fx, y - fy);
        let get = |xi: f32, yi: f32| {
            if xi < 0.0 || yi < 0.0 || xi >= WIDTH as f32 || yi >= HEIGHT as f32 {
                0.0
            } else {
                mag[yi as usize * WIDTH + xi as usize]
            }
        };
        get(fx, fy) * (1.0 - ax) * (1.0 - ay)
            + get(fx + 1.0, fy) * ax * (1.0 - ay)
            + get(fx, fy + 1.0) * (1.0 - ax) * ay
            + get(fx + 1.0, fy + 1.0) * ax * ay
    };
    let cell = side / GRID as f32;
    let mut out = vec![0f32; FEATURES];
    for i in 0..GRID {
        for j in 0..GRID {
            let mut s = 0.0;
            for (di, dj) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                s += sample(
                    bx + (j as f32 + dj) * cell - 0.5,
                    by + (i as f32 + di) * cell - 0.5,
                );
            }
            out[i * GRID + j] = s / 4.0;
        }
    }
    let m = out.iter().copied().fold(0f32, f32::max).max(1e-6);
    out.iter_mut()
        .for_each(|v| *v = (*v / m * 1000.0).round() / 1000.0);
    out
}

/// A two-layer perceptron: `inputs` → `hidden` (ReLU) → `classes` (softmax).
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// Input width.
    pub inputs: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Output width.
    pub classes: usize,
    /// `hidden × inputs`, row-major.
    pub w1: Vec<f32>,
    /// `hidden`.
    pub b1: Vec<f32>,
    /// `classes × hidden`, row-major.
    pub w2: Vec<f32>,
    /// `classes`.
    pub b2: Vec<f32>,
}

const MAGIC: &[u8; 4] = b"JVC1";

impl Mlp {
    fn hidden_of(&self, x: &[f32]) -> Vec<f32> {
        (0..self.hidden)
            .map(|h| {
                let row = &self.w1[h * self.inputs..(h + 1) * self.inputs];
                let z: f32 = row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + self.b1[h];
                z.max(0.0)
            })
            .collect()
    }

    fn logits_of(&self, h: &[f32]) -> Vec<f32> {
        (0..self.classes)
            .map(|c| {
                let row = &self.w2[c * self.hidden..(c + 1) * self.hidden];
                row.iter().zip(h).map(|(w, v)| w * v).sum::<f32>() + self.b2[c]
            })
            .collect()
    }

    /// Class probabilities for a feature vector of length `inputs`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        softmax(&self.logits_of(&self.hidden_of(x)))
    }

    /// The most probable class and its probability.
    pub fn predict(&self, x: &[f32]) -> (usize, f32) {
        let p = self.forward(x);
        let mut best = 0;
        for (i, v) in p.iter().enumerate() {
            if *v > p[best] {
                best = i;
            }
        }
        (best, p[best])
    }

    /// The file format of `data/video_classifier.bin`: `JVC1`, then `inputs`, `hidden`, `classes`
    /// as little-endian u32, then `w1`, `b1`, `w2`, `b2` as little-endian f32.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for n in [self.inputs, self.hidden, self.classes] {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        for v in self
            .w1
            .iter()
            .chain(&self.b1)
            .chain(&self.w2)
            .chain(&self.b2)
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Read [`Mlp::to_bytes`]'s format.
    pub fn from_bytes(b: &[u8]) -> Result<Mlp, String> {
        if b.len() < 16 || &b[..4] != MAGIC {
            return Err("not a JVC1 classifier file".into());
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let (inputs, hidden, classes) = (u(4), u(8), u(12));
        let n = hidden * inputs + hidden + classes * hidden + classes;
        if b.len() != 16 + 4 * n {
            return Err(format!(
                "classifier file has {} bytes, expected {} for {inputs}→{hidden}→{classes}",
                b.len(),
                16 + 4 * n
            ));
        }
        let mut vals = b[16..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let mut take = |k: usize| (&mut vals).take(k).collect::<Vec<f32>>();
        Ok(Mlp {
            inputs,
            hidden,
            classes,
            w1: take(hidden * inputs),
            b1: take(hidden),
            w2: take(classes * hidden),
            b2: take(classes),
        })
    }
}

fn softmax(z: &[f32]) -> Vec<f32> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The shipped parameters of the classifier.
static SHIPPED: &[u8] = include_bytes!("../../data/video_classifier.bin");

/// The classifier `classify` uses, read once from `data/video_classifier.bin` (produced by
/// [`train_classifier`]`(6000, 12, 2024)`; regenerate with
/// `cargo test -p joint-examples --release --lib -- --ignored regenerate_video_classifier`).
pub fn classifier() -> Result<&'static Mlp, String> {
    static MODEL: OnceLock<Result<Mlp, String>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let m = Mlp::from_bytes(SHIPPED)?;
            if m.inputs != FEATURES || m.classes != CLASSES.len() {
                return Err(format!(
                    "classifier is {}→{}, expected {FEATURES}→{}",
                    m.inputs,
                    m.classes,
                    CLASSES.len()
                ));
            }
            Ok(m)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A labelled sample drawn from the training distribution (videos whose seeds are derived from
/// `seed`, disjoint in practice from the small seeds runs use).
pub fn sample(seed: u64, i: u64) -> (Vec<f32>, usize) {
    let vseed = mix(&[seed, i, 0x7EA1]);
    let frame = i % 48;
    let px = render_frame(vseed, frame);
    (features(&px), ground_truth(vseed, frame))
}

/// Train the classifier: `samples` labelled frames from [`sample`], plain SGD on the
/// cross-entropy (learning rate 0.05 decaying by 0.8 per epoch), `epochs` passes in an order
/// shuffled by `seed`, Xavier-uniform initialisation from `seed`. Deterministic.
pub fn train_classifier(samples: usize, epochs: usize, seed: u64) -> Mlp {
    let data: Vec<(Vec<f32>, usize)> = (0..samples as u64).map(|i| sample(seed, i)).collect();
    let (inputs, hidden, classes) = (FEATURES, 64, CLASSES.len());
    let mut rng = Rng::for_stream(&[seed, 0x1417]);
    let mut init = |n: usize, fan_in: usize, fan_out: usize| -> Vec<f32> {
        let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
        (0..n).map(|_| rng.range_f64(-a, a) as f32).collect()
    };
    let mut m = Mlp {
        inputs,
        hidden,
        classes,
        w1: init(hidden * inputs, inputs, hidden),
        b1: vec![0.0; hidden],
        w2: init(classes * hidden, hidden, classes),
        b2: vec![0.0; classes],
    };
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut lr = 0.05f32;
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        for &k in &order {
            let (x, y) = &data[k];
            let h = m.hidden_of(x);
            let mut dz = softmax(&m.logits_of(&h));
            dz[*y] -= 1.0;
            let mut dh = vec![0f32; hidden];
            for (c, &d) in dz.iter().enumerate() {
                let row = &mut m.w2[c * hidden..(c + 1) * hidden];
                for ((w, dhj), hj) in row.iter_mut().zip(dh.iter_mut()).zip(&h) {
                    *dhj += *w * d;
                    *w -= lr * d * hj;
                }
                m.b2[c] -= lr * d;
            }
            for (j, (&hj, &dhj)) in h.iter().zip(&dh).enumerate() {
                if hj <= 0.0 {
                    continue;
                }
                let g = lr * dhj;
                for (w, v) in m.w1[j * inputs..(j + 1) * inputs].iter_mut().zip(x) {
                    *w -= g * v;
                }
                m.b1[j] -= g;
            }
        }
        lr *= 0.8;
    }
    m
}

/// Fraction of `samples` held-out frames (from [`sample`] with `seed`) that `m` labels correctly.
pub fn accuracy(m: &Mlp, seed: u64, samples: u64) -> f64 {
    let ok = (0..samples)
        .filter(|&i| {
            let (x, y) = sample(seed, i);
            m.predict(&x).0 == y
        })
        .count();
    ok as f64 / samples.max(1) as f64
}

fn split(input: &Value) -> Result<Value, FnError> {
    let input = &*or_defaults(input);
    const W: &str = "video_split";
    object(input, W, "{\"fanout\": n, \"frames\": n, \"seed\": s}")?;
    let fanout = field_u64(input, W, "fanout", Some(8), 1, 4096)?;
    let frames = field_u64(input, W, "frames", Some(240), 1, MAX_FRAMES)?;
    let seed = field_u64(input, W, "seed", Some(1), 0, u64::MAX)?;
    let interval = field_u64(
        input,
        W,
        "keyframe_interval",
        Some(KEYFRAME_INTERVAL),
        1,
        MAX_FRAMES,
    )?;
    if fanout > frames {
        return Err(fn_error(format!(
            "{W}: cannot cut {frames} frames into {fanout} chunks"
        )));
    }
    Ok(Value::Array(
        (0..fanout)
            .map(|i| {
                json!({
                    "chunk": i,
                    "seed": seed,
                    "start": frames * i / fanout,
                    "end": frames * (i + 1) / fanout,
                    "keyframe_interval": interval,
                })
            })
            .collect(),
    ))
}

fn extract(input: &Value) -> Result<Value, FnError> {
    const W: &str = "video_extract";
    object(input, W, "a chunk descriptor from video_split")?;
    let chunk = field_u64(input, W, "chunk", None, 0, u64::MAX)?;
    let seed = field_u64(input, W, "seed", None, 0, u64::MAX)?;
    let start = field_u64(input, W, "start", None, 0, MAX_FRAMES)?;
    let end = field_u64(input, W, "end", None, start, MAX_FRAMES)?;
    let interval = field_u64(
        input,
        W,
        "keyframe_interval",
        Some(KEYFRAME_INTERVAL),
        1,
        MAX_FRAMES,
    )?;
    let keys: Vec<Value> = key_frames(seed, start, end, interval)
        .into_iter()
        .map(|(f, px)| json!({"frame": f, "pixels": B64.encode(px)}))
        .collect();
    Ok(json!({
        "chunk": chunk,
        "width": WIDTH,
        "height": HEIGHT,
        "frames": end - start,
        "keyframes": keys,
    }))
}

fn process(input: &Value) -> Result<Value, FnError> {
    const W: &str = "image_process";
    object(input, W, "video_extract's output")?;
    let chunk = field_u64(input, W, "chunk", None, 0, u64::MAX)?;
    let keys = input
        .get("keyframes")
        .and_then(Value::as_array)
        .ok_or_else(|| fn_error(format!("{W}: input has no \"keyframes\" list")))?;
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let frame = field_u64(k, W, "frame", None, 0, MAX_FRAMES)?;
        let px = k
            .get("pixels")
            .and_then(Value::as_str)
            .ok_or_else(|| fn_error(format!("{W}: key frame {frame} has no \"pixels\"")))
            .and_then(|s| {
                B64.decode(s)
                    .map_err(|e| fn_error(format!("{W}: key frame {frame}: bad base64: {e}")))
            })?;
        if px.len() != WIDTH * HEIGHT {
            return Err(fn_error(format!(
                "{W}: key frame {frame} has {} pixels, expected {WIDTH}×{HEIGHT}",
                px.len()
            )));
        }
        let v: Vec<Value> = features(&px).iter().map(|&x| jround(x as f64, 3)).collect();
        out.push(json!({"frame": frame, "features": v}));
    }
    Ok(json!({"chunk": chunk, "features": out}))
}

fn classify(input: &Value) -> Result<Value, FnError> {
    const W: &str = "classify";
    let model = classifier().map_err(|e| fn_error(format!("{W}: {e}")))?;
    let branches = list(input, W)?;
    let mut frames = Vec::new();
    let mut counts = [0u64; CLASSES.len()];
    for b in branches {
        let feats = b.get("features").and_then(Value::as_array).ok_or_else(|| {
            fn_error(format!(
                "{W}: a branch output has no \"features\" list (is it image_process's?)"
            ))
        })?;
        for f in feats {
            let frame = field_u64(f, W, "frame", None, 0, MAX_FRAMES)?;
            let x: Vec<f32> = f
                .get("features")
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_f64)
                        .map(|v| v as f32)
                        .collect()
                })
                .unwrap_or_default();
            if x.len() != FEATURES {
                return Err(fn_error(format!(
                    "{W}: frame {frame} has {} features, expected {FEATURES}",
                    x.len()
                )));
            }
            let (c, p) = model.predict(&x);
            counts[c] += 1;
            frames.push(json!({"frame": frame, "label": CLASSES[c], "p": jround(p as f64, 4)}));
        }
    }
    let total: u64 = counts.iter().sum();
    let by_class: serde_json::Map<String, Value> = CLASSES
        .iter()
        .zip(counts)
        .map(|(n, c)| (n.to_string(), json!(c)))
        .collect();
    Ok(json!({
        "labels": frames,
        "summary": {"keyframes": total, "chunks": branches.len(), "counts": by_class},
    }))
}

/// Register `video_split`, `video_extract`, `image_process` and `classify`.
pub fn register(h: &mut Handlers) {
    h.register(
        "video_split",
        handler_fn(|v: Value, _| async move { split(&v) }),
    );
    h.register(
        "video_extract",
        handler_fn(|v: Value, _| async move { cpu("video_extract", move || extract(&v)).await }),
    );
    h.register(
        "image_process",
        handler_fn(|v: Value, _| async move { cpu("image_process", move || process(&v)).await }),
    );
    h.register(
        "classify",
        handler_fn(|v: Value, _| async move { cpu("classify", move || classify(&v)).await }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_is_deterministic_and_scenes_cut() {
        assert_eq!(render_frame(3, 17), render_frame(3, 17));
        assert_ne!(render_frame(3, 17), render_frame(4, 17));
        let keys = key_frames(3, 0, 60, KEYFRAME_INTERVAL);
        let sc = scenes(3, 60);
        // Every scene that starts inside the range starts with a key frame.
        for s in sc.iter().filter(|s| s.start < 60) {
            assert!(
                keys.iter().any(|(f, _)| *f == s.start),
                "scene at {} not cut; keys {:?}",
                s.start,
                keys.iter().map(|k| k.0).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn split_covers_every_frame_once() {
        let v = split(&json!({"fanout": 3, "frames": 10, "seed": 1})).unwrap();
        let r: Vec<(u64, u64)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["start"].as_u64().unwrap(), c["end"].as_u64().unwrap()))
            .collect();
        assert_eq!(r, vec![(0, 3), (3, 6), (6, 10)]);
        assert!(split(&json!({"fanout": 20, "frames": 10})).is_err());
    }

    #[test]
    fn shipped_classifier_beats_chance_by_far() {
        let m = classifier().unwrap();
        let acc = accuracy(m, 99, 200);
        assert!(acc > 0.9, "held-out accuracy {acc}");
        // The shipped bytes round-trip.
        assert_eq!(Mlp::from_bytes(&m.to_bytes()).unwrap(), *m);
    }

    /// Rewrite `data/video_classifier.bin`. Run in release:
    /// `cargo test -p joint-examples --release --lib -- --ignored regenerate_video_classifier`.
    #[test]
    #[ignore]
    fn regenerate_video_classifier() {
        let m = train_classifier(6000, 12, 2024);
        let acc = accuracy(&m, 99, 1000);
        println!("held-out accuracy: {acc:.4}");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/video_classifier.bin");
        std::fs::write(path, m.to_bytes()).unwrap();
    }
}
