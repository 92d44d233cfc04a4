//! Token sampling: greedy, temperature, top-k, top-p, min-p, repeat penalty.
//!
//! The order follows llama.cpp's default sampler chain: repeat penalty, then
//! top-k, top-p, min-p on the raw logits, then temperature, then a draw from
//! the softmax. A temperature of 0 is greedy (argmax after the penalty) and
//! ignores the random state.

use std::collections::VecDeque;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 = all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p`; 1 = all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 = off.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recent tokens; 1 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerParams {
    /// llama.cpp's defaults.
    fn default() -> Self {
        Self { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.0, repeat_last_n: 64, seed: 0 }
    }
}

impl SamplerParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let p = self;
        anyhow::ensure!(
            p.temperature.is_finite() && p.temperature >= 0.0,
            "temperature must be a number >= 0 (0 = greedy), got {}",
            p.temperature
        );
        anyhow::ensure!(p.top_p > 0.0 && p.top_p <= 1.0, "top-p must be in (0, 1], got {}", p.top_p);
        anyhow::ensure!((0.0..=1.0).contains(&p.min_p), "min-p must be in [0, 1], got {}", p.min_p);
        anyhow::ensure!(
            p.repeat_penalty.is_finite() && p.repeat_penalty > 0.0,
            "repeat penalty must be a number > 0 (1 = off), got {}",
            p.repeat_penalty
        );
        Ok(())
    }
}

/// A small, fast, seedable generator (PCG32, XSH-RR variant).
#[derive(Clone, Debug)]
pub struct Pcg32 {
    state: u64,
    inc: u64,
}

impl Pcg32 {
    const MUL: u64 = 6364136223846793005;

    pub fn new(seed: u64) -> Self {
        let mut rng = Self { state: 0, inc: (0xda3e39cb94b95bdb << 1) | 1 };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(seed);
        rng.next_u32();
        rng
    }

    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(Self::MUL).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

pub struct Sampler {
    params: SamplerParams,
    rng: Pcg32,
    /// The last `repeat_last_n` tokens seen (prompt and output).
    recent: VecDeque<u32>,
    /// (token, logit or probability) candidates, reused between calls.
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplerParams) -> anyhow::Result<Self> {
        params.validate()?;
        Ok(Self {
            rng: Pcg32::new(params.seed),
            recent: VecDeque::with_capacity(params.repeat_last_n),
            cand: Vec::new(),
            params,
        })
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Record a token (from the prompt or generated) for the repeat penalty.
    pub fn accept(&mut self, token: u32) {
        if self.params.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.params.repeat_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Forget the recorded tokens (the random state continues).
    pub fn reset(&mut self) {
        self.recent.clear();
    }

    /// Pick the next token from `logits` (changed in place by the penalty).
    /// Does not [`accept`](Self::accept) it.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.apply_repeat_penalty(logits);
        if self.params.temperature == 0.0 {
            return argmax(logits);
        }
        let p = &self.params;
        let cand = &mut self.cand;
        cand.clear();
        cand.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));

        // Top-k: keep the k largest, sorted.
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_logit_desc);
            cand.truncate(p.top_k);
        }
        cand.sort_unstable_by(by_logit_desc);

        // Top-p on the softmax of the (untempered) logits, keeping at least one.
        if p.top_p < 1.0 {
            let probs = softmax_probs(cand);
            let mut cum = 0.0;
            let mut keep = cand.len();
            for (i, pr) in probs.enumerate() {
                cum += pr;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }

        // Min-p: p_i >= min_p * p_max  <=>  logit_i >= logit_max + ln(min_p).
        if p.min_p > 0.0 {
            let threshold = cand[0].1 + p.min_p.ln();
            let keep = cand.iter().take_while(|c| c.1 >= threshold).count();
            cand.truncate(keep.max(1));
        }

        // Temperature, softmax, draw.
        let max = cand[0].1;
        let mut sum = 0.0f32;
        for c in cand.iter_mut() {
            c.1 = ((c.1 - max) / p.temperature).exp();
            sum += c.1;
        }
        let r = self.rng.next_f32() * sum;
        let mut cum = 0.0;
        for c in cand.iter() {
            cum += c.1;
            if r < cum {
                return c.0;
            }
        }
        cand[cand.len() - 1].0
    }

    /// llama.cpp's repeat penalty: each distinct recent token's logit is
    /// divided by the penalty when positive, multiplied when negative.
    fn apply_repeat_penalty(&self, logits: &mut [f32]) {
        let penalty = self.params.repeat_penalty;
        if penalty == 1.0 {
            return;
        }
        for (i, &t) in self.recent.iter().enumerate() {
            // Apply once per distinct token.
            if self.recent.iter().take(i).any(|&u| u == t) {
                continue;
            }
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l <= 0.0 { *l * penalty } else { *l / penalty };
            }
        }
    }
}

/// The index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Softmax probabilities of sorted candidates (largest logit first).
fn softmax_probs(cand: &[(u32, f32)]) -> impl Iterator<Item = f32> + '_ {
    let max = cand[0].1;
    let sum: f32 = cand.iter().map(|c| (c.1 - max).exp()).sum();
    cand.iter().map(move |c| (c.1 - max).exp() / sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(p: SamplerParams) -> Sampler {
        Sampler::new(p).unwrap()
    }

    #[test]
    fn greedy_is_argmax_and_ignores_seed() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        for seed in 0..5 {
            let mut s = sampler(SamplerParams { seed, ..SamplerParams::greedy() });
            assert_eq!(s.sample(&mut logits.clone()), 1);
        }
    }

    #[test]
    fn fixed_seed_reproduces_and_seeds_differ() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = sampler(SamplerParams {
                seed,
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                ..Default::default()
            });
            (0..50).map(|_| s.sample(&mut logits.clone())).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = sampler(SamplerParams { temperature: 5.0, top_k: 1, ..Default::default() });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.0, 3.0, 2.9, -4.0]), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities ~ [0.665, 0.245, 0.090] at these logits.
        let logits = [2.0f32, 1.0, 0.0];
        let draws = |p: SamplerParams| {
            let mut s = sampler(p);
            (0..400).map(|_| s.sample(&mut logits.to_vec())).collect::<std::collections::BTreeSet<_>>()
        };
        let base = SamplerParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() };
        assert_eq!(draws(base.clone()).len(), 3);
        assert_eq!(draws(SamplerParams { top_p: 0.6, ..base.clone() }), [0].into());
        assert_eq!(draws(SamplerParams { top_p: 0.8, ..base.clone() }), [0, 1].into());
        // min_p 0.3: token 2 has p/p_max = e^-2 = 0.135 < 0.3, token 1 e^-1 = 0.37.
        assert_eq!(draws(SamplerParams { min_p: 0.3, ..base }), [0, 1].into());
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut s = sampler(SamplerParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        });
        let n = 20000;
        let ones = (0..n).filter(|_| s.sample(&mut logits.to_vec()) == 1).count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.02, "{frac}");
    }

    #[test]
    fn repeat_penalty_follows_llama_cpp() {
        let mut s = sampler(SamplerParams { repeat_penalty: 2.0, repeat_last_n: 2, ..SamplerParams::greedy() });
        s.accept(0);
        s.accept(1);
        s.accept(1);
        // Window is [1, 1]: token 1 penalized once (4 -> 2), token 0 left alone.
        let mut logits = vec![3.0, 4.0, -1.0];
        assert_eq!(s.sample(&mut logits), 0);
        assert_eq!(logits, vec![3.0, 2.0, -1.0]);
        s.accept(2);
        let mut logits = vec![3.0, 4.0, -1.0];
        s.sample(&mut logits);
        assert_eq!(logits, vec![3.0, 2.0, -2.0]);
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let bad = [
            SamplerParams { temperature: -0.1, ..Default::default() },
            SamplerParams { temperature: f32::NAN, ..Default::default() },
            SamplerParams { top_p: 0.0, ..Default::default() },
            SamplerParams { top_p: 1.5, ..Default::default() },
            SamplerParams { min_p: -0.5, ..Default::default() },
            SamplerParams { min_p: 1.01, ..Default::default() },
            SamplerParams { repeat_penalty: 0.0, ..Default::default() },
        ];
        for p in bad {
            assert!(Sampler::new(p.clone()).is_err(), "{p:?}");
        }
        assert!(Sampler::new(SamplerParams::default()).is_ok());
    }
}
