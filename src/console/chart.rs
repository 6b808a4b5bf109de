//! The version distribution as an inline SVG bar chart (top 5 + others),
//! drawn on the server: no chart library, nothing fetched by the browser.

use maud::{html, Markup};

/// Bars shown; the rest are summed into "others".
pub const TOP: usize = 5;

/// `(label, count)` pairs, largest first, cut to the top 5 plus "others".
pub fn top(mut counts: Vec<(String, u64)>) -> Vec<(String, u64)> {
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if counts.len() > TOP + 1 {
        let others: u64 = counts[TOP..].iter().map(|(_, n)| n).sum();
        let n = counts.len() - TOP;
        counts.truncate(TOP);
        counts.push((format!("others ({n} versions)"), others));
    }
    counts
}

/// Colours with at least 3:1 contrast on white (bars are graphics).
const COLOURS: [&str; 6] = [
    "#0b57b7", "#0c7a3e", "#a34d00", "#7a2a9c", "#a31515", "#4a5360",
];

/// A horizontal bar chart; `title` names it for screen readers.
pub fn bars(title: &str, rows: &[(String, u64)]) -> Markup {
    const LABEL_W: u64 = 170;
    const BAR_W: u64 = 330;
    const ROW_H: u64 = 30;
    let width = LABEL_W + BAR_W + 90;
    let height = ROW_H * rows.len().max(1) as u64 + 10;
    let max = rows.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let total: u64 = rows.iter().map(|(_, n)| n).sum::<u64>().max(1);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox={ "0 0 " (width) " " (height) }
            width=(width) height=(height) aria-label=(title) {
            title { (title) }
            @for (i, (label, n)) in rows.iter().enumerate() {
                @let y = 5 + ROW_H * i as u64;
                @let w = (BAR_W * n / max).max(1);
                @let shown: String = if label.chars().count() > 24 {
                    format!("{}…", label.chars().take(23).collect::<String>())
                } else { label.clone() };
                text x=(LABEL_W - 8) y=(y + 19) text-anchor="end" font-size="14" fill="#1b1f24" { (shown) }
                rect x=(LABEL_W) y=(y + 4) width=(w) height=(ROW_H - 8) rx="3"
                    fill=(COLOURS[i % COLOURS.len()]) {}
                text x=(LABEL_W + w + 6) y=(y + 19) font-size="14" fill="#1b1f24" {
                    (n) " (" (n * 100 / total) "%)"
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_five_and_others() {
        let counts = (0..8).map(|i| (format!("v{i}"), i as u64 + 1)).collect();
        let rows = top(counts);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0], ("v7".to_string(), 8));
        assert_eq!(rows[5], ("others (3 versions)".to_string(), 1 + 2 + 3));
        let svg = bars("t", &rows).into_string();
        assert_eq!(svg.matches("<rect").count(), 6);
    }

    #[test]
    fn labels_are_escaped() {
        let svg = bars("t", &[("<script>".into(), 1)]).into_string();
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"));
    }
}
