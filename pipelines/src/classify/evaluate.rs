//! Scores against held-out labels: accuracy, per-class precision and recall, confusion matrix.

use serde::Serialize;

/// Counts of (truth, predicted) pairs; index `labels.len()` is "unknown".
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Class names, then `"unknown"`.
    pub labels: Vec<String>,
    /// `confusion[truth][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Chips evaluated.
    pub chips: u64,
    /// Correct / chips.
    pub accuracy: f64,
    /// Per class: precision (correct / predicted as it) and recall (correct / truly it);
    /// `null` when the denominator is 0.
    pub per_class: Vec<ClassScore>,
}

/// Precision and recall of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassScore {
    /// The class.
    pub label: String,
    /// Correct / predicted as this class.
    pub precision: Option<f64>,
    /// Correct / truly this class.
    pub recall: Option<f64>,
    /// Chips truly of this class.
    pub support: u64,
}

impl Evaluation {
    /// Empty counts over `labels`.
    pub fn new(labels: &[String]) -> Self {
        let n = labels.len() + 1;
        let mut names = labels.to_vec();
        names.push("unknown".into());
        Self { labels: names, confusion: vec![vec![0; n]; n], chips: 0, accuracy: 0.0, per_class: vec![] }
    }

    /// Counts one chip; `None` = unknown.
    pub fn add(&mut self, truth: Option<usize>, predicted: Option<usize>) {
        let u = self.labels.len() - 1;
        self.confusion[truth.unwrap_or(u)][predicted.unwrap_or(u)] += 1;
        self.chips += 1;
    }

    /// Computes the scores from the counts.
    pub fn finish(mut self) -> Self {
        let n = self.labels.len();
        let correct: u64 = (0..n).map(|i| self.confusion[i][i]).sum();
        self.accuracy = if self.chips > 0 { correct as f64 / self.chips as f64 } else { 0.0 };
        self.per_class = (0..n - 1)
            .map(|c| {
                let predicted: u64 = (0..n).map(|t| self.confusion[t][c]).sum();
                let truly: u64 = self.confusion[c].iter().sum();
                let tp = self.confusion[c][c] as f64;
                ClassScore {
                    label: self.labels[c].clone(),
                    precision: (predicted > 0).then(|| tp / predicted as f64),
                    recall: (truly > 0).then(|| tp / truly as f64),
                    support: truly,
                }
            })
            .collect();
        self
    }

    /// The confusion matrix as text (rows: truth, columns: predicted).
    pub fn table(&self) -> String {
        let w = self.labels.iter().map(String::len).max().unwrap_or(5).max(7);
        let mut s = format!("{:>w$} |", "truth\\pred");
        for l in &self.labels {
            s += &format!(" {l:>w$}");
        }
        s.push('\n');
        for (t, row) in self.confusion.iter().enumerate() {
            s += &format!("{:>w$} |", self.labels[t]);
            for v in row {
                s += &format!(" {v:>w$}");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_from_counts() {
        let mut e = Evaluation::new(&["a".into(), "b".into()]);
        for (t, p) in [(0, Some(0)), (0, Some(0)), (0, Some(1)), (1, Some(1)), (1, None)] {
            e.add(Some(t), p);
        }
        let e = e.finish();
        assert_eq!(e.chips, 5);
        assert!((e.accuracy - 0.6).abs() < 1e-12);
        assert_eq!(e.per_class[0].precision, Some(1.0));
        assert!((e.per_class[0].recall.unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.per_class[1].precision, Some(0.5));
        assert_eq!(e.per_class[1].recall, Some(0.5));
        assert_eq!(e.confusion[1][2], 1);
        assert!(e.table().contains("unknown"));
    }
}
