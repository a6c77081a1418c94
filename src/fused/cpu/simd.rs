//! Which instruction set the CPU kernels run with: the best the CPU has among AVX-512 (F, BW,
//! DQ, VL), AVX2 with FMA and the baseline, or a lower one named by the environment variable
//! `BURN_XENT_CPU_FEATURES` (`avx512`, `avx2` or `baseline`), read once per process: to
//! compare the tiers' speed, or to rule one out when a result looks wrong. A tier the CPU
//! lacks is never chosen, whatever the variable says.

use std::sync::OnceLock;

/// An instruction-set tier of the CPU kernels, from the most to the least capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only x86-64 has the upper two
pub(crate) enum Tier {
    Baseline,
    Avx2,
    Avx512,
}

/// The environment variable that caps the tier.
const FEATURES_VAR: &str = "BURN_XENT_CPU_FEATURES";

/// The tier the kernels run with (decided once).
pub(crate) fn tier() -> Tier {
    static TIER: OnceLock<Tier> = OnceLock::new();
    *TIER.get_or_init(|| {
        let cap = std::env::var(FEATURES_VAR).ok().map(|name| parse(&name));
        detected().min(cap.unwrap_or(Tier::Avx512))
    })
}

/// The tier named by `name` (`avx512`, `avx2`, `baseline`).
///
/// # Panics
/// On any other name, with the variable's name and the names it takes.
fn parse(name: &str) -> Tier {
    match name.trim() {
        "avx512" => Tier::Avx512,
        "avx2" => Tier::Avx2,
        "baseline" => Tier::Baseline,
        other => panic!("{FEATURES_VAR}: expected avx512, avx2 or baseline, got {other:?}"),
    }
}

/// The best tier this CPU supports.
fn detected() -> Tier {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f")
            && has!("avx512bw")
            && has!("avx512dq")
            && has!("avx512vl")
            && has!("fma")
        {
            return Tier::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Tier::Avx2;
        }
    }
    Tier::Baseline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_order() {
        assert_eq!(parse("avx512"), Tier::Avx512);
        assert_eq!(parse(" avx2 "), Tier::Avx2);
        assert_eq!(parse("baseline"), Tier::Baseline);
        assert!(Tier::Baseline < Tier::Avx2 && Tier::Avx2 < Tier::Avx512);
    }

    #[test]
    #[should_panic(
        expected = "BURN_XENT_CPU_FEATURES: expected avx512, avx2 or baseline, got \"sse\""
    )]
    fn other_names_are_refused() {
        parse("sse");
    }

    #[test]
    fn never_above_the_cpu() {
        assert!(tier() <= detected());
    }
}
