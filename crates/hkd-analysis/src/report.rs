//! `report.html`: the analysis in one file that opens in any browser, offline — the
//! configurations (sortable, filterable), the paired deltas as a forest plot, the figures
//! (inline SVG: training curves, reliability diagrams, …) and each run's provenance. No
//! network, no CDN, no fonts or scripts from elsewhere: everything is in the file.

use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;

use crate::figures::FigureFiles;
use crate::paired::PairedDelta;
use crate::table::any_value_string;
use crate::{GroupSummary, SkippedRun};

/// What [`render_report`] shows.
pub struct ReportInput<'a> {
    pub root: &'a Path,
    pub runs_table: &'a DataFrame,
    pub averages: &'a DataFrame,
    pub groups: &'a [GroupSummary],
    pub figures: &'a [FigureFiles],
    pub skipped: &'a [SkippedRun],
    pub warnings: &'a [String],
    /// The reference group's description and the paired deltas against it.
    pub paired: Option<(&'a str, &'a [PairedDelta])>,
}

/// `&`, `<`, `>`, `"` and `'` escaped for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A sortable, filterable HTML table of `columns` of `df` (all when empty).
fn frame_table(df: &DataFrame, columns: &[&str], id: &str) -> String {
    let names: Vec<String> = if columns.is_empty() {
        df.get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        columns
            .iter()
            .filter(|c| df.column(c).is_ok())
            .map(|c| c.to_string())
            .collect()
    };
    let mut html = format!(
        "<input class=\"filter\" data-table=\"{id}\" placeholder=\"filter rows\" aria-label=\"filter {id}\">\n<div class=\"scroll\"><table id=\"{id}\" class=\"sortable\"><thead><tr>"
    );
    for name in &names {
        let _ = write!(html, "<th title=\"sort by {0}\">{0}</th>", escape(name));
    }
    html.push_str("</tr></thead><tbody>\n");
    let cols: Vec<&Column> = names.iter().filter_map(|n| df.column(n).ok()).collect();
    for row in 0..df.height() {
        html.push_str("<tr>");
        for col in &cols {
            let text = col
                .get(row)
                .map(|v| any_value_string(&v))
                .unwrap_or_default();
            let _ = write!(html, "<td>{}</td>", escape(&text));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table></div>\n");
    html
}

/// The paired deltas as a forest plot: one row per configuration and metric, the mean
/// difference with its 95 % interval, a line at zero.
fn forest_plot(deltas: &[PairedDelta], groups: &[GroupSummary]) -> String {
    let rows: Vec<&PairedDelta> = deltas.iter().filter(|d| d.delta_mean.is_some()).collect();
    if rows.is_empty() {
        return "<p>No paired difference with a value.</p>\n".into();
    }
    // each metric once, in the order the deltas first name them
    let mut metrics: Vec<&str> = Vec::new();
    for d in &rows {
        if !metrics.contains(&d.metric.as_str()) {
            metrics.push(&d.metric);
        }
    }
    let mut html = String::new();
    for metric in metrics {
        let these: Vec<&&PairedDelta> = rows.iter().filter(|d| d.metric == metric).collect();
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        for d in &these {
            let m = d.delta_mean.unwrap_or(0.0);
            let (a, b) = d.ci95.unwrap_or((m, m));
            lo = lo.min(a).min(m);
            hi = hi.max(b).max(m);
        }
        let span = (hi - lo).max(1e-12);
        let (lo, hi) = (lo - 0.05 * span, hi + 0.05 * span);
        let (w, label_w, row_h) = (760.0, 300.0, 22.0);
        let plot_w = w - label_w - 20.0;
        let x = |v: f64| label_w + (v - lo) / (hi - lo) * plot_w;
        let h = 30.0 + row_h * these.len() as f64;
        let (zero, axis_y, label_y) = (x(0.0), h - 22.0, h - 8.0);
        let right = w - 20.0;
        let title = escape(metric);
        // "0" under the zero line, unless it would run into the end labels
        let zero_label = if zero - label_w > 40.0 && right - zero > 40.0 {
            format!(
                "<text x=\"{zero:.1}\" y=\"{label_y:.1}\" text-anchor=\"middle\" font-size=\"11\">0</text>\n"
            )
        } else {
            String::new()
        };
        let _ = write!(
            html,
            "<figure class=\"forest\"><figcaption>{title} — configuration − reference (mean and 95 % t-interval over the paired repeats)</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">\n<line x1=\"{zero:.1}\" y1=\"4\" x2=\"{zero:.1}\" y2=\"{axis_y:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\n{zero_label}<text x=\"{label_w:.1}\" y=\"{label_y:.1}\" font-size=\"11\">{lo:+.3}</text><text x=\"{right:.1}\" y=\"{label_y:.1}\" text-anchor=\"end\" font-size=\"11\">{hi:+.3}</text>\n"
        );
        for (i, d) in these.iter().enumerate() {
            let y = 14.0 + row_h * i as f64;
            let m = d.delta_mean.unwrap_or(0.0);
            let name = group_label(groups, d.group);
            let interval = match d.ci95 {
                Some((a, b)) => {
                    let _ = write!(
                        html,
                        "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#1f5fa8\" stroke-width=\"2\"/>",
                        x(a),
                        x(b)
                    );
                    format!("{m:+.4} [{a:+.4}, {b:+.4}]")
                }
                None => format!("{m:+.4} (one pair)"),
            };
            let _ = writeln!(
                html,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"#1f5fa8\"><title>{}: {} (n = {})</title></circle><text x=\"4\" y=\"{:.1}\" font-size=\"12\">{}</text>",
                x(m),
                escape(&name),
                escape(&interval),
                d.n_pairs(),
                y + 4.0,
                escape(&format!("{name}: {interval}"))
            );
        }
        html.push_str("</svg></figure>\n");
    }
    html
}

/// A configuration by the keys whose values differ between configurations
/// (`key=value, …`; all keys when none differs).
fn group_label(groups: &[GroupSummary], index: usize) -> String {
    let Some(g) = groups.get(index) else {
        return format!("group {index}");
    };
    let varying: Vec<String> = g
        .keys
        .iter()
        .enumerate()
        .filter(|(k, (_, v))| {
            groups
                .iter()
                .any(|o| o.keys.get(*k).is_some_and(|(_, w)| w != v))
        })
        .map(|(_, (k, v))| format!("{}={v}", crate::short_key(k)))
        .collect();
    if varying.is_empty() {
        g.keys
            .iter()
            .map(|(k, v)| format!("{}={v}", crate::short_key(k)))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        varying.join(", ")
    }
}

/// The report's HTML: one self-contained file.
pub fn render_report(input: &ReportInput<'_>) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>hkd analysis</h1>\n<p class=\"meta\">{} runs in {} configurations under <code>{}</code>; {} run directories left out; written {} by hkd {}.</p>",
        input.runs_table.height(),
        input.groups.len(),
        escape(&input.root.display().to_string()),
        input.skipped.len(),
        escape(
            &jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_default()
        ),
        escape(hkd_rundir::HKD_VERSION),
    );
    if !input.warnings.is_empty() {
        body.push_str("<details><summary>Warnings</summary><ul>");
        for w in input.warnings {
            let _ = write!(body, "<li>{}</li>", escape(w));
        }
        body.push_str("</ul></details>\n");
    }
    body.push_str("<h2 id=\"configurations\">Configurations</h2>\n<p>One row per configuration, averaged over its repeats (<code>average_results.csv</code>). Click a header to sort, type to filter.</p>\n");
    body.push_str(&frame_table(input.averages, &[], "configurations-table"));
    if let Some((reference, deltas)) = input.paired {
        let _ = writeln!(
            body,
            "<h2 id=\"paired\">Paired differences</h2>\n<p>Against <code>{}</code>, repeat i against repeat i (<code>paired_deltas.csv</code>).</p>",
            escape(reference)
        );
        body.push_str(&forest_plot(deltas, input.groups));
    }
    if !input.figures.is_empty() {
        body.push_str("<h2 id=\"figures\">Figures</h2>\n");
        for f in input.figures {
            match std::fs::read_to_string(&f.svg) {
                Ok(svg) => {
                    // the SVG inline, without its XML declaration
                    let svg = svg
                        .find("<svg")
                        .map_or(svg.as_str(), |i| &svg[i..])
                        .to_string();
                    let _ = writeln!(
                        body,
                        "<figure class=\"plot\">{svg}<figcaption>{}</figcaption></figure>",
                        escape(&f.caption)
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        body,
                        "<p>{} could not be read: {}</p>",
                        escape(&f.svg.display().to_string()),
                        escape(&e.to_string())
                    );
                }
            }
        }
    }
    body.push_str("<h2 id=\"provenance\">Runs and their provenance</h2>\n<p>Every analysed run (<code>runs.csv</code>): where it lies, what it was made from and by which hkd, how long it trained.</p>\n");
    body.push_str(&frame_table(
        input.runs_table,
        &[
            "run_dir",
            "teacher",
            "student",
            "iter",
            "seed",
            "val_acc",
            "final_val_acc",
            "epochs_recorded",
            "train_seconds",
            "device",
            "hkd_version",
            "data_manifest_hash",
            "data_dir",
        ],
        "runs-table",
    ));
    if !input.skipped.is_empty() {
        body.push_str("<h2 id=\"left-out\">Left out</h2><ul>");
        for s in input.skipped {
            let _ = write!(
                body,
                "<li><code>{}</code>: {}</li>",
                escape(&s.dir.display().to_string()),
                escape(&s.reason)
            );
        }
        body.push_str("</ul>\n");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>hkd analysis of {}</title>\n<style>{STYLE}</style></head>\n<body>\n{body}<script>{SCRIPT}</script>\n</body></html>\n",
        escape(&input.root.display().to_string())
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}h1{font-size:1.5em}\
.meta{color:#555}.scroll{overflow-x:auto;max-height:32em;overflow-y:auto}\
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ccc;padding:2px 6px;white-space:nowrap}\
th{background:#eee;cursor:pointer;position:sticky;top:0}th.asc::after{content:' \\25B2'}th.desc::after{content:' \\25BC'}\
tbody tr:nth-child(even){background:#f7f7f7}.filter{margin:0.3em 0;padding:3px;width:20em}\
figure{margin:1em 0}figure.plot svg{max-width:100%;height:auto}figcaption{font-size:13px;color:#444}";

/// Sorting by a header click (numbers as numbers), filtering by the box above a table.
const SCRIPT: &str = "document.querySelectorAll('table.sortable').forEach(function(t){\
t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){\
var asc=!th.classList.contains('asc');t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc')});\
th.classList.add(asc?'asc':'desc');var b=t.tBodies[0];var rows=Array.prototype.slice.call(b.rows);\
rows.sort(function(x,y){var a=x.cells[i].textContent,c=y.cells[i].textContent;var na=parseFloat(a),nc=parseFloat(c);\
var r=(!isNaN(na)&&!isNaN(nc))?na-nc:a.localeCompare(c);return asc?r:-r});\
rows.forEach(function(r){b.appendChild(r)})})})});\
document.querySelectorAll('input.filter').forEach(function(f){f.addEventListener('input',function(){\
var t=document.getElementById(f.dataset.table);var q=f.value.toLowerCase();\
Array.prototype.forEach.call(t.tBodies[0].rows,function(r){r.style.display=r.textContent.toLowerCase().indexOf(q)<0?'none':''})})});\
if(location.hash==='#selftest'){var r={};var t=document.getElementById('configurations-table');\
var hs=Array.prototype.slice.call(t.querySelectorAll('th'));var i=hs.findIndex(function(h){return h.textContent==='val_acc_mean'});\
var col=function(){return Array.prototype.map.call(t.tBodies[0].rows,function(x){return parseFloat(x.cells[i].textContent)})};\
r.before=col();hs[i].click();r.ascending=col();hs[i].click();r.descending=col();\
r.figures=Array.prototype.map.call(document.querySelectorAll('figure svg'),function(s){var b=s.getBoundingClientRect();return [b.width,b.height]});\
r.resources=performance.getEntriesByType('resource').length;document.body.setAttribute('data-selftest',JSON.stringify(r))}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape("<b>a & 'b' \"c\"</b>"),
            "&lt;b&gt;a &amp; &#39;b&#39; &quot;c&quot;&lt;/b&gt;"
        );
    }
}
