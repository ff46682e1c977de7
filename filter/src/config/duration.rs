//! Durations as users write them in Istio and Envoy configs: `250ms`, `30s`, `5m`, `1h`.

use std::time::Duration;

pub fn parse(raw: &str) -> Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let amount: u64 = digits.parse().map_err(|_| {
        format!("{raw:?} is not a duration like \"250ms\", \"30s\", \"5m\" or \"1h\"")
    })?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{raw:?} has unit {unit:?}; use ms, s, m or h")),
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{raw:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_missing_or_unknown_units_and_overflow() {
        assert!(parse("30").is_err());
        assert!(parse("s").is_err());
        assert!(parse("1d").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("1.5s").is_err());
        assert!(parse("99999999999999999h").is_err());
    }
}
