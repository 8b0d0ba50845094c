//! Sharding a run across processes or machines.
//!
//! A unit belongs to shard `fnv1a(unit id) mod N`. The assignment depends only on the unit's id,
//! not on the rest of the plan, so shards that plan at slightly different times (a scene
//! published in between) still agree on who maps what: no unit is mapped by two shards or by
//! none.

use anyhow::{Context, Result, bail};

/// This process's part of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Where the shard came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSource {
    /// `--shard I/N`.
    Flag,
    /// `SLURM_ARRAY_TASK_ID` / `SLURM_ARRAY_TASK_COUNT`.
    Slurm,
    /// `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job).
    Kubernetes,
    /// None given: one shard.
    Single,
}

impl Shard {
    /// Parses `I/N` with `0 <= I < N`.
    pub fn parse(s: &str) -> Result<Self> {
        let (i, n) = s
            .split_once('/')
            .with_context(|| format!("--shard {s:?}: expected I/N, e.g. 0/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .with_context(|| format!("--shard {s:?}: {i:?} is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .with_context(|| format!("--shard {s:?}: {n:?} is not a number"))?;
        Self::new(index, count).with_context(|| format!("--shard {s:?}"))
    }

    fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            bail!("shard index {index} is not in 0..{count}");
        }
        Ok(Self { index, count })
    }

    /// The shard from `--shard`, else from the environment of a Slurm job array
    /// (`SLURM_ARRAY_TASK_ID`, minus `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`) or a
    /// Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` of `TERRASTREAM_SHARD_COUNT`, else
    /// `run.shards`), else the whole run.
    pub fn resolve(
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
        config_count: Option<usize>,
    ) -> Result<(Self, ShardSource)> {
        if let Some(f) = flag {
            return Ok((Self::parse(f)?, ShardSource::Flag));
        }
        let num = |key: &str| -> Result<Option<usize>> {
            env(key)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .with_context(|| format!("{key}={v:?} is not a number"))
                })
                .transpose()
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let count = num("SLURM_ARRAY_TASK_COUNT")?
                .context("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id
                .checked_sub(min)
                .with_context(|| format!("SLURM_ARRAY_TASK_ID {id} < SLURM_ARRAY_TASK_MIN {min}"))?;
            return Ok((
                Self::new(index, count).context("Slurm array (use --array=0-(N-1))")?,
                ShardSource::Slurm,
            ));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = match num("TERRASTREAM_SHARD_COUNT")? {
                Some(c) => c,
                None => config_count.context(
                    "JOB_COMPLETION_INDEX is set: give the shard count as TERRASTREAM_SHARD_COUNT or run.shards",
                )?,
            };
            return Ok((
                Self::new(index, count).context("Kubernetes Indexed Job")?,
                ShardSource::Kubernetes,
            ));
        }
        Ok((Self::default(), ShardSource::Single))
    }

    /// True when unit `id` is this shard's.
    pub fn owns(&self, unit_id: &str) -> bool {
        fnv1a(unit_id.as_bytes()) % self.count as u64 == self.index as u64
    }
}

/// 64-bit FNV-1a: a stable hash (the same on every platform and release, unlike `std`'s).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn every_unit_has_exactly_one_shard() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        let mut per_shard = [0; 3];
        for u in 0..300 {
            let id = format!("MGRS-{u:03}_2020-02");
            let owners: Vec<_> = shards.iter().filter(|s| s.owns(&id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            per_shard[owners[0].index] += 1;
        }
        // Spread, not all on one shard.
        assert!(per_shard.iter().all(|&n| n > 60), "{per_shard:?}");
    }

    #[test]
    fn fnv1a_is_the_reference_function() {
        // Test vectors of the FNV specification.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shards_from_flags_and_schedulers() {
        let none = env(&[]);
        assert_eq!(
            Shard::resolve(Some("2/5"), &none, None).expect("flag").0,
            Shard { index: 2, count: 5 }
        );
        assert_eq!(
            Shard::resolve(None, &none, None).expect("single").1,
            ShardSource::Single
        );
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(
            Shard::resolve(None, env(&slurm), None).expect("slurm"),
            (Shard { index: 2, count: 4 }, ShardSource::Slurm)
        );
        let k8s = [("JOB_COMPLETION_INDEX", "1")];
        assert_eq!(
            Shard::resolve(None, env(&k8s), Some(3)).expect("k8s").0,
            Shard { index: 1, count: 3 }
        );
        let k8s_env = [("JOB_COMPLETION_INDEX", "1"), ("TERRASTREAM_SHARD_COUNT", "2")];
        assert_eq!(
            Shard::resolve(None, env(&k8s_env), Some(3)).expect("k8s env").0,
            Shard { index: 1, count: 2 }
        );
        let errors: HashMap<&str, String> = [
            (
                "flag",
                format!("{:#}", Shard::resolve(Some("3/3"), &none, None).expect_err("3/3")),
            ),
            (
                "k8s",
                format!("{:#}", Shard::resolve(None, env(&k8s), None).expect_err("no count")),
            ),
            (
                "slurm",
                format!(
                    "{:#}",
                    Shard::resolve(None, env(&[("SLURM_ARRAY_TASK_ID", "x")]), None).expect_err("x")
                ),
            ),
        ]
        .into();
        assert!(errors["flag"].contains("--shard"), "{}", errors["flag"]);
        assert!(errors["k8s"].contains("TERRASTREAM_SHARD_COUNT"), "{}", errors["k8s"]);
        assert!(errors["slurm"].contains("SLURM_ARRAY_TASK_ID"), "{}", errors["slurm"]);
    }
}
