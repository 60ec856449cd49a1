//! Inline SVG charts for the HTML report: plain shapes with a `<title>` each,
//! styled by the report's style sheet (classes `bar`, `target`, `up`, `down`,
//! `total`, `tick`, `axis`).

use std::fmt::Write as _;

/// Escapes text for HTML and SVG content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn open(label: &str, width: u32, height: u32) -> String {
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{0}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{0}</title>",
        escape(label)
    )
}

/// A line through the defined values, scaled to a 100×24 box; `None` when
/// fewer than two values are defined. Gaps break the line.
pub fn sparkline(values: &[Option<f64>]) -> Option<String> {
    let defined: Vec<f64> = values.iter().flatten().copied().collect();
    if defined.len() < 2 {
        return None;
    }
    let min = defined.iter().copied().fold(f64::INFINITY, f64::min);
    let max = defined.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if max > min { max - min } else { 1.0 };
    let step = 100.0 / (values.len().max(2) - 1) as f64;
    let mut path = String::new();
    let mut pen = false;
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(v) => {
                let y = 22.0 - (v - min) / span * 20.0;
                let _ = write!(
                    path,
                    "{}{:.1},{:.1}",
                    if pen { 'L' } else { 'M' },
                    i as f64 * step,
                    y
                );
                pen = true;
            }
            None => pen = false,
        }
    }
    Some(format!(
        "<svg class=\"spark\" viewBox=\"0 0 100 24\" preserveAspectRatio=\"none\" aria-hidden=\"true\" \
         xmlns=\"http://www.w3.org/2000/svg\"><path d=\"{path}\"/></svg>"
    ))
}

/// One bar per period with a line through the targets; `tip` names a value
/// for the bar's tooltip.
pub fn bars_with_line(
    label: &str,
    labels: &[String],
    bars: &[Option<f64>],
    line: &[Option<f64>],
    tip: &dyn Fn(f64) -> String,
) -> String {
    let (width, height, top, bottom, left) = (480.0, 200.0, 10.0, 170.0, 10.0);
    let max = bars
        .iter()
        .chain(line)
        .flatten()
        .copied()
        .fold(1.0_f64, f64::max);
    let y = |v: f64| bottom - v.max(0.0) / max * (bottom - top);
    let step = (width - left) / labels.len().max(1) as f64;
    let mut out = open(label, width as u32, height as u32);
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{left}\" x2=\"{width}\" y1=\"{bottom}\" y2=\"{bottom}\"/>"
    );
    let mut path = String::new();
    for (i, name) in labels.iter().enumerate() {
        let x = left + i as f64 * step;
        if let Some(v) = bars.get(i).copied().flatten() {
            let _ = write!(
                out,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {}</title></rect>",
                x + step * 0.15,
                y(v),
                step * 0.7,
                bottom - y(v),
                escape(name),
                escape(&tip(v))
            );
        }
        if let Some(t) = line.get(i).copied().flatten() {
            let _ = write!(
                path,
                "{}{:.1},{:.1}",
                if path.is_empty() { 'M' } else { 'L' },
                x + step / 2.0,
                y(t)
            );
        }
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + step / 2.0,
            height - 14.0,
            escape(name)
        );
    }
    if !path.is_empty() {
        let _ = write!(out, "<path class=\"target\" d=\"{path}\"/>");
    }
    out.push_str("</svg>");
    out
}

/// One step of a waterfall.
pub struct Step {
    /// Label under the bar.
    pub label: String,
    /// `Some(sign)` for a movement (+1 or -1) from the running level, `None`
    /// for a total drawn from zero.
    pub sign: Option<f64>,
    /// The amount (a total's level, or a movement's size).
    pub amount: f64,
    /// Text above the bar.
    pub text: String,
}

/// A waterfall: totals from zero, movements floating from the running level.
pub fn waterfall(label: &str, steps: &[Step]) -> String {
    let (width, height, top, bottom) = (480.0, 200.0, 14.0, 170.0);
    let mut level = 0.0;
    let spans: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| match s.sign {
            None => {
                level = s.amount;
                (0.0, s.amount)
            }
            Some(sign) => {
                let from = level;
                level += sign * s.amount;
                (from, level)
            }
        })
        .collect();
    let max = spans
        .iter()
        .flat_map(|&(a, b)| [a, b])
        .fold(1.0_f64, f64::max);
    let y = |v: f64| bottom - v.max(0.0) / max * (bottom - top);
    let step = width / steps.len().max(1) as f64;
    let mut out = open(label, width as u32, height as u32);
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"0\" x2=\"{width}\" y1=\"{bottom}\" y2=\"{bottom}\"/>"
    );
    for (i, (s, &(from, to))) in steps.iter().zip(&spans).enumerate() {
        let x = i as f64 * step;
        let (hi, lo) = (from.max(to), from.min(to));
        let class = match s.sign {
            None => "total",
            Some(sign) if sign > 0.0 => "up",
            Some(_) => "down",
        };
        let _ = write!(
            out,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {}</title></rect>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + step * 0.15,
            y(hi),
            step * 0.7,
            (y(lo) - y(hi)).max(1.0),
            escape(&s.label),
            escape(&s.text),
            x + step / 2.0,
            y(hi) - 3.0,
            escape(&s.text),
            x + step / 2.0,
            height - 14.0,
            escape(&s.label),
        );
    }
    out.push_str("</svg>");
    out
}

/// Horizontal bars, one per stage: (stage, reached, text after the bar).
pub fn funnel(label: &str, stages: &[(String, i64, String)]) -> String {
    let (width, row, left, right) = (480.0, 26.0, 110.0, 150.0);
    let height = stages.len() as f64 * row + 4.0;
    let max = stages.iter().map(|s| s.1).max().unwrap_or(1).max(1) as f64;
    let mut out = open(label, width as u32, height as u32);
    for (i, (stage, reached, text)) in stages.iter().enumerate() {
        let w = (*reached as f64 / max * (width - left - right)).max(1.0);
        let top = i as f64 * row;
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{left}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            left - 4.0,
            top + 17.0,
            escape(stage),
            top + 3.0,
            row - 6.0,
            left + w + 4.0,
            top + 17.0,
            escape(text),
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&#39;");
    }

    #[test]
    fn a_sparkline_breaks_at_gaps_and_needs_two_values() {
        assert_eq!(sparkline(&[Some(1.0), None]), None);
        let line = sparkline(&[Some(0.0), Some(10.0), None, Some(5.0)]).unwrap();
        // x steps of 100/3; 0 at the bottom (22), 10 at the top (2), 5 halfway.
        assert!(
            line.contains("d=\"M0.0,22.0L33.3,2.0M100.0,12.0\""),
            "{line}"
        );
    }

    #[test]
    fn waterfall_movements_float_from_the_running_level() {
        let step = |label: &str, sign: Option<f64>, amount: f64| Step {
            label: label.into(),
            sign,
            amount,
            text: label.into(),
        };
        let svg = waterfall(
            "MRR",
            &[
                step("start", None, 100.0),
                step("new", Some(1.0), 50.0),
                step("churn", Some(-1.0), 30.0),
                step("end", None, 120.0),
            ],
        );
        // Scale: 150 is the top (y 14), 0 the axis (y 170); 156 px per 150.
        // "new" spans 100..150: y 14, height 52.
        assert!(
            svg.contains(
                "<rect class=\"up\" x=\"138.0\" y=\"14.0\" width=\"84.0\" height=\"52.0\">"
            ),
            "{svg}"
        );
        // "churn" spans 120..150: y 14, height 31.2.
        assert!(
            svg.contains(
                "<rect class=\"down\" x=\"258.0\" y=\"14.0\" width=\"84.0\" height=\"31.2\">"
            ),
            "{svg}"
        );
    }
}
