//! Indicators over closing prices, oldest first. Each output series is as
//! long as its input, `None` until the indicator has warmed up.

/// Simple moving average of the last `period` values.
pub fn sma(closes: &[f64], period: usize) -> Vec<Option<f64>> {
    (0..closes.len())
        .map(|i| {
            (i + 1 >= period)
                .then(|| closes[i + 1 - period..=i].iter().sum::<f64>() / period as f64)
        })
        .collect()
}

/// Exponential moving average seeded with the SMA of the first `period` values; `None` before that.
pub fn ema(values: &[f64], period: usize) -> Vec<Option<f64>> {
    let alpha = 2.0 / (period as f64 + 1.0);
    let mut out = vec![None; values.len()];
    if values.len() < period {
        return out;
    }
    let mut current = values[..period].iter().sum::<f64>() / period as f64;
    out[period - 1] = Some(current);
    for i in period..values.len() {
        current += alpha * (values[i] - current);
        out[i] = Some(current);
    }
    out
}

/// Wilder's RSI.
pub fn rsi(closes: &[f64], period: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; closes.len()];
    if closes.len() <= period {
        return out;
    }
    let change = |i: usize| closes[i] - closes[i - 1];
    let (mut gain, mut loss) = (1..=period).fold((0.0, 0.0), |(g, l), i| {
        let c = change(i);
        (g + c.max(0.0), l + (-c).max(0.0))
    });
    gain /= period as f64;
    loss /= period as f64;
    let value = |gain: f64, loss: f64| {
        if loss == 0.0 {
            100.0
        } else {
            100.0 - 100.0 / (1.0 + gain / loss)
        }
    };
    out[period] = Some(value(gain, loss));
    for (i, slot) in out.iter_mut().enumerate().skip(period + 1) {
        let c = change(i);
        gain = (gain * (period as f64 - 1.0) + c.max(0.0)) / period as f64;
        loss = (loss * (period as f64 - 1.0) + (-c).max(0.0)) / period as f64;
        *slot = Some(value(gain, loss));
    }
    out
}

/// Three aligned series.
pub type Three = (Vec<Option<f64>>, Vec<Option<f64>>, Vec<Option<f64>>);

/// MACD line (fast EMA minus slow EMA), its signal EMA, and the histogram.
pub fn macd(closes: &[f64], fast: usize, slow: usize, signal: usize) -> Three {
    let line: Vec<Option<f64>> = ema(closes, fast)
        .into_iter()
        .zip(ema(closes, slow))
        .map(|(f, s)| Some(f? - s?))
        .collect();
    // The signal line is an EMA over the defined part of the MACD line.
    let start = line.iter().position(Option::is_some).unwrap_or(line.len());
    let defined: Vec<f64> = line[start..].iter().flatten().copied().collect();
    let mut signal_line = vec![None; start];
    signal_line.extend(ema(&defined, signal));
    let histogram = line
        .iter()
        .zip(&signal_line)
        .map(|(m, s)| Some((*m)? - (*s)?))
        .collect();
    (line, signal_line, histogram)
}

/// Bollinger bands: upper, middle (SMA) and lower, `width` standard
/// deviations apart.
pub fn bollinger(closes: &[f64], period: usize, width: f64) -> Three {
    let middle = sma(closes, period);
    let deviation: Vec<Option<f64>> = (0..closes.len())
        .map(|i| {
            let mean = middle[i]?;
            let window = &closes[i + 1 - period..=i];
            Some((window.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / period as f64).sqrt())
        })
        .collect();
    let band = |sign: f64| {
        middle
            .iter()
            .zip(&deviation)
            .map(|(m, d)| Some((*m)? + sign * width * (*d)?))
            .collect()
    };
    (band(1.0), middle.clone(), band(-1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sma_warms_up_then_averages() {
        assert_eq!(
            sma(&[1.0, 2.0, 3.0, 4.0], 2),
            [None, Some(1.5), Some(2.5), Some(3.5)]
        );
    }

    #[test]
    fn ema_is_seeded_with_the_sma() {
        let out = ema(&[2.0, 4.0, 6.0, 8.0], 3);
        assert_eq!(out[..3], [None, None, Some(4.0)]);
        // alpha = 0.5: 4 + 0.5 * (8 - 4)
        assert_eq!(out[3], Some(6.0));
    }

    #[test]
    fn rsi_of_a_rising_series_is_100() {
        let closes: Vec<f64> = (0..20).map(f64::from).collect();
        let out = rsi(&closes, 14);
        assert_eq!(out[13], None);
        assert_eq!(out[14], Some(100.0));
    }

    #[test]
    fn bollinger_bands_are_symmetric_around_the_sma() {
        let (upper, middle, lower) = bollinger(&[1.0, 3.0, 1.0, 3.0], 2, 2.0);
        assert_eq!(middle[1], Some(2.0));
        assert_eq!(upper[1], Some(4.0));
        assert_eq!(lower[1], Some(0.0));
    }
}
