//! Few-shot classifiers over embeddings: class prototypes (the mean of the examples' unit
//! vectors, normalised; cosine similarity to each) or k nearest examples (cosine, votes
//! weighted by similarity). Negative examples form a "none of these" class that maps to
//! unknown.

use anyhow::{Result, bail};

/// How chips are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Nearest class prototype (mean of the examples' normalised embeddings).
    Prototype,
    /// Majority of the k most similar examples, weighted by similarity.
    Knn,
}

/// A chip's label: `label` indexes [`Classifier::labels`], `None` = unknown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The label, or `None` (unknown: rejected, or closest to the negative examples).
    pub label: Option<usize>,
    /// Prototype: cosine similarity to the winner's prototype. k-NN: the winner's share of the
    /// similarity-weighted votes (0..1).
    pub score: f32,
    /// The score minus the runner-up's (the negative class counts as a runner-up).
    pub margin: f32,
}

/// A trained classifier.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// The labels, sorted.
    pub labels: Vec<String>,
    method: Method,
    dim: usize,
    /// Prototype: one unit vector per label, then (if any negatives) the negative one.
    /// k-NN: every example's unit vector.
    vectors: Vec<f32>,
    /// k-NN: the class of each example (`labels.len()` = negative).
    classes: Vec<usize>,
    k: usize,
    reject: Option<f32>,
    negatives: bool,
}

/// The dot product of two equal-length slices (eight lanes, so that it vectorises).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `v / |v|`; a zero vector stays zero.
pub fn unit(v: &[f32]) -> Vec<f32> {
    let n = dot(v, v).sqrt();
    if n > 0.0 { v.iter().map(|x| x / n).collect() } else { v.to_vec() }
}

impl Classifier {
    /// Trains on `examples`: `(label, embedding)`, `None` for negative examples. `k` is used by
    /// k-NN; `reject` leaves chips whose score is below it unknown.
    pub fn train(method: Method, examples: &[(Option<String>, Vec<f32>)], k: usize, reject: Option<f32>) -> Result<Self> {
        let mut labels: Vec<String> = examples.iter().filter_map(|(l, _)| l.clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.is_empty() {
            bail!("no labelled example lies on a chip: nothing to learn from");
        }
        let dim = examples[0].1.len();
        if examples.iter().any(|(_, v)| v.len() != dim) {
            bail!("examples' embeddings differ in length");
        }
        if k == 0 {
            bail!("--k must be at least 1");
        }
        let class = |l: &Option<String>| l.as_ref().map_or(labels.len(), |l| labels.binary_search(l).unwrap_or(0));
        let negatives = examples.iter().any(|(l, _)| l.is_none());
        let (vectors, classes) = match method {
            Method::Prototype => {
                let n = labels.len() + usize::from(negatives);
                let mut sums = vec![0f32; n * dim];
                for (l, v) in examples {
                    let c = class(l);
                    for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(unit(v)) {
                        *s += x;
                    }
                }
                let protos: Vec<f32> = sums.chunks(dim).flat_map(unit).collect();
                (protos, (0..n).collect())
            }
            Method::Knn => (
                examples.iter().flat_map(|(_, v)| unit(v)).collect(),
                examples.iter().map(|(l, _)| class(l)).collect(),
            ),
        };
        Ok(Self { labels, method, dim, vectors, classes, k, reject, negatives })
    }

    /// The embedding dimension it was trained on.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Labels one embedding.
    pub fn classify(&self, v: &[f32]) -> Decision {
        let norm = dot(v, v).sqrt();
        let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        let classes = self.labels.len() + usize::from(self.negatives);
        let mut score = vec![0f32; classes];
        match self.method {
            Method::Prototype => {
                for (c, p) in self.vectors.chunks_exact(self.dim).enumerate() {
                    score[c] = dot(v, p) * inv;
                }
            }
            Method::Knn => {
                let mut sims: Vec<(f32, usize)> = self
                    .vectors
                    .chunks_exact(self.dim)
                    .zip(&self.classes)
                    .map(|(e, &c)| (dot(v, e) * inv, c))
                    .collect();
                let k = self.k.min(sims.len());
                sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
                let top = &sims[..k];
                let total: f32 = top.iter().map(|(s, _)| s.max(0.0) + 1e-6).sum();
                for (s, c) in top {
                    score[*c] += (s.max(0.0) + 1e-6) / total;
                }
            }
        }
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
        let best = order[0];
        let runner = order.get(1).map_or(0.0, |&c| score[c]);
        let margin = score[best] - runner;
        let rejected = self.reject.is_some_and(|t| score[best] < t);
        let label = (best < self.labels.len() && !rejected).then_some(best);
        Decision { label, score: score[best], margin }
    }
}

/// Labels the `vectors` (`rows × dim`, row-major) on up to `threads` threads.
pub fn classify_all(classifier: &Classifier, vectors: &[f32], threads: usize) -> Vec<Decision> {
    let dim = classifier.dim.max(1);
    let rows = vectors.len() / dim;
    let threads = threads.clamp(1, rows.div_ceil(512).max(1));
    if threads == 1 {
        return vectors.chunks_exact(dim).map(|v| classifier.classify(v)).collect();
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = vectors
            .chunks(per * dim)
            .map(|part| s.spawn(move || part.chunks_exact(dim).map(|v| classifier.classify(v)).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(l: Option<&str>, v: &[f32]) -> (Option<String>, Vec<f32>) {
        (l.map(String::from), v.to_vec())
    }

    #[test]
    fn prototypes_pick_the_closest_mean() {
        let examples = [ex(Some("b"), &[0.0, 1.0]), ex(Some("a"), &[1.0, 0.1]), ex(Some("a"), &[1.0, -0.1])];
        let c = Classifier::train(Method::Prototype, &examples, 1, None).expect("train");
        assert_eq!(c.labels, ["a", "b"]);
        let d = c.classify(&[2.0, 0.5]);
        assert_eq!(d.label, Some(0));
        // cos to (1,0) vs (0,1): 2/sqrt(4.25) - 0.5/sqrt(4.25).
        assert!((d.score - 2.0 / 4.25f32.sqrt()).abs() < 1e-5, "{d:?}");
        assert!((d.margin - 1.5 / 4.25f32.sqrt()).abs() < 1e-5, "{d:?}");
        assert_eq!(c.classify(&[0.1, 3.0]).label, Some(1));
    }

    #[test]
    fn negatives_and_rejection_give_unknown() {
        let examples = [ex(Some("a"), &[1.0, 0.0]), ex(None, &[0.0, 1.0])];
        let c = Classifier::train(Method::Prototype, &examples, 1, None).expect("train");
        assert_eq!(c.classify(&[0.1, 1.0]).label, None);
        assert_eq!(c.classify(&[1.0, 0.1]).label, Some(0));
        let strict = Classifier::train(Method::Prototype, &examples, 1, Some(0.99)).expect("train");
        assert_eq!(strict.classify(&[1.0, 0.5]).label, None);
    }

    #[test]
    fn knn_votes() {
        let examples = [
            ex(Some("a"), &[1.0, 0.0]),
            ex(Some("a"), &[0.9, 0.1]),
            ex(Some("b"), &[0.0, 1.0]),
            ex(Some("b"), &[0.1, 0.9]),
            ex(Some("b"), &[0.2, 0.8]),
        ];
        let c = Classifier::train(Method::Knn, &examples, 3, None).expect("train");
        let d = c.classify(&[1.0, 0.05]);
        assert_eq!(d.label, Some(0), "{d:?}");
        assert!(d.score > 0.5 && d.score <= 1.0 && d.margin > 0.0);
        assert_eq!(c.classify(&[0.05, 1.0]).label, Some(1));
        let many: Vec<f32> = (0..3000).flat_map(|i| [(i % 7) as f32, (i % 5) as f32]).collect();
        let one: Vec<Decision> = many.chunks(2).map(|v| c.classify(v)).collect();
        assert_eq!(classify_all(&c, &many, 3), one);
        assert!(Classifier::train(Method::Knn, &examples, 0, None).is_err());
        assert!(Classifier::train(Method::Knn, &[ex(None, &[1.0])], 1, None).is_err());
    }
}
