//! Entry and exit rules: `clause (and|or clause)*`, each clause
//! `operand op operand`, where `op` is `>`, `<`, `>=`, `<=`,
//! `crosses_above` or `crosses_below`, and an operand is a number, a price
//! field (`open`, `high`, `low`, `close`, `volume`), an indicator id, or
//! `id.output` for an indicator with several outputs (`bb.upper`,
//! `macd.signal`). `and` binds tighter than `or`.

use std::collections::HashMap;

/// Named series, aligned with the bars; `None` where not yet defined.
pub type Series = HashMap<String, Vec<Option<f64>>>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Above,
    Below,
    AtLeast,
    AtMost,
    CrossesAbove,
    CrossesBelow,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Number(f64),
    Series(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Clause {
    left: Operand,
    op: Op,
    right: Operand,
}

/// A parsed rule: any of its groups holding, where a group holds when all
/// its clauses do.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    any: Vec<Vec<Clause>>,
}

impl Rule {
    /// Parses `text`; every series it names must be in `series`.
    pub fn parse(text: &str, series: &Series) -> Result<Rule, String> {
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        let mut any = Vec::new();
        for group in words.split(|w| w == "or") {
            let mut all = Vec::new();
            for clause in group.split(|w| w == "and") {
                all.push(parse_clause(clause, series)?);
            }
            any.push(all);
        }
        Ok(Rule { any })
    }

    /// Whether the rule holds at bar `i`.
    pub fn holds(&self, series: &Series, i: usize) -> bool {
        self.any
            .iter()
            .any(|all| all.iter().all(|clause| clause.holds(series, i)))
    }
}

fn parse_clause(words: &[String], series: &Series) -> Result<Clause, String> {
    let [left, op, right] = words else {
        return Err(format!(
            "expected `operand op operand`, got {:?} (ops: > < >= <= crosses_above crosses_below)",
            words.join(" ")
        ));
    };
    let op = match op.as_str() {
        ">" => Op::Above,
        "<" => Op::Below,
        ">=" => Op::AtLeast,
        "<=" => Op::AtMost,
        "crosses_above" => Op::CrossesAbove,
        "crosses_below" => Op::CrossesBelow,
        other => return Err(format!("unknown operator {other:?}")),
    };
    Ok(Clause {
        left: operand(left, series)?,
        op,
        right: operand(right, series)?,
    })
}

fn operand(word: &str, series: &Series) -> Result<Operand, String> {
    if let Ok(number) = word.parse::<f64>() {
        return Ok(Operand::Number(number));
    }
    if series.contains_key(word) {
        return Ok(Operand::Series(word.to_owned()));
    }
    let mut known: Vec<&str> = series.keys().map(String::as_str).collect();
    known.sort_unstable();
    Err(format!(
        "{word:?} is not a number, a price field or an indicator of this strategy (known: {})",
        known.join(", ")
    ))
}

impl Operand {
    fn at(&self, series: &Series, i: usize) -> Option<f64> {
        match self {
            Operand::Number(n) => Some(*n),
            Operand::Series(name) => series[name][i],
        }
    }
}

impl Clause {
    fn holds(&self, series: &Series, i: usize) -> bool {
        let now = self.left.at(series, i).zip(self.right.at(series, i));
        let Some((a, b)) = now else {
            return false;
        };
        let before = || {
            let i = i.checked_sub(1)?;
            self.left.at(series, i).zip(self.right.at(series, i))
        };
        match self.op {
            Op::Above => a > b,
            Op::Below => a < b,
            Op::AtLeast => a >= b,
            Op::AtMost => a <= b,
            Op::CrossesAbove => before().is_some_and(|(pa, pb)| pa <= pb) && a > b,
            Op::CrossesBelow => before().is_some_and(|(pa, pb)| pa >= pb) && a < b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        let mut s = Series::new();
        s.insert("fast".into(), vec![None, Some(1.0), Some(3.0), Some(2.0)]);
        s.insert("slow".into(), vec![None, Some(2.0), Some(2.0), Some(2.5)]);
        s.insert(
            "close".into(),
            vec![Some(9.0), Some(10.0), Some(11.0), Some(12.0)],
        );
        s
    }

    #[test]
    fn crossings_need_the_previous_bar() {
        let s = series();
        let up = Rule::parse("fast crosses_above slow", &s).unwrap();
        assert_eq!(
            (0..4).map(|i| up.holds(&s, i)).collect::<Vec<_>>(),
            [false, false, true, false]
        );
        let down = Rule::parse("fast crosses_below slow", &s).unwrap();
        assert!(down.holds(&s, 3));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let s = series();
        let rule = Rule::parse("close > 100 and fast > 0 or close >= 12", &s).unwrap();
        assert!(!rule.holds(&s, 2));
        assert!(rule.holds(&s, 3));
    }

    #[test]
    fn unknown_names_and_operators_are_errors() {
        let s = series();
        assert!(Rule::parse("rsi > 70", &s).unwrap_err().contains("rsi"));
        assert!(
            Rule::parse("fast => slow", &s)
                .unwrap_err()
                .contains("operator")
        );
        assert!(Rule::parse("fast slow", &s).is_err());
    }
}
