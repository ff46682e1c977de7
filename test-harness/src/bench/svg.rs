//! Horizontal grouped bar charts as plain SVG text: one group per configuration, one bar per
//! series, the value written at the end of each bar. No plotting dependency is needed for this.

use std::fmt::Write;

const WIDTH: f64 = 820.0;
const LABEL_WIDTH: f64 = 250.0;
const RIGHT_MARGIN: f64 = 70.0;
const TOP: f64 = 48.0;
const BAR: f64 = 13.0;
const GROUP_GAP: f64 = 12.0;
const COLOURS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];

pub struct Series<'a> {
    pub name: &'a str,
    pub values: Vec<f64>,
}

/// A chart of `series` over `groups`; `unit` follows each value label.
pub fn bar_chart(title: &str, unit: &str, groups: &[String], series: &[Series<'_>]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let scale_max = nice_ceiling(max);
    let plot_width = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
    let group_height = BAR * series.len() as f64 + GROUP_GAP;
    let legend_top = TOP + group_height * groups.len() as f64 + 24.0;
    let height = legend_top + 24.0;
    let x = |value: f64| LABEL_WIDTH + plot_width * (value / scale_max);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" "#,
            r#"viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
        ),
        width = WIDTH,
        height = height
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        10,
        escape(title)
    );

    for tick in 0..=4 {
        let value = scale_max * f64::from(tick) / 4.0;
        let tx = x(value);
        let bottom = legend_top - 18.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{bottom:.1}" stroke="#ddd"/>"##,
            TOP - 6.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="{tx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
            bottom + 13.0,
            short(value)
        );
    }

    for (g, group) in groups.iter().enumerate() {
        let top = TOP + group_height * g as f64;
        let middle = top + BAR * series.len() as f64 / 2.0 + 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{middle:.1}" text-anchor="end">{}</text>"#,
            LABEL_WIDTH - 8.0,
            escape(group)
        );
        for (s, one) in series.iter().enumerate() {
            let Some(value) = one.values.get(g).copied().filter(|v| v.is_finite()) else {
                continue;
            };
            let y = top + BAR * s as f64;
            let colour = COLOURS[s % COLOURS.len()];
            let bar_width = (x(value) - LABEL_WIDTH).max(0.5);
            let _ = writeln!(
                svg,
                r#"<rect x="{}" y="{y:.1}" width="{bar_width:.1}" height="{:.1}" fill="{}"/>"#,
                LABEL_WIDTH,
                BAR - 2.0,
                colour
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="10">{} {}</text>"#,
                LABEL_WIDTH + bar_width + 4.0,
                y + BAR - 4.0,
                short(value),
                escape(unit)
            );
        }
    }

    let mut legend_x = LABEL_WIDTH;
    for (s, one) in series.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        let _ = writeln!(
            svg,
            r#"<rect x="{legend_x:.1}" y="{:.1}" width="12" height="12" fill="{colour}"/>"#,
            legend_top - 2.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 16.0,
            legend_top + 8.0,
            escape(one.name)
        );
        legend_x += 24.0 + 7.0 * one.name.len() as f64;
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * power)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * power)
}

fn short(value: f64) -> String {
    match value {
        0.0 => "0".to_string(),
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
