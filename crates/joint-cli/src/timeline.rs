//! `joint run --timeline run.svg`: a run drawn as a Gantt chart from the runtime's events.
//!
//! One row per instance (ordered by first start), each execution of the instance a bar tinted with
//! the colour of the cloud it ran on, the protocol segments inside it (user function, checkpoint,
//! join, invoke, finish/GC), failed executions hatched red with their delivery number and the crash
//! point, failovers marked `from → to`. Hand-written SVG, no dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::SystemTime;

use joint_shim::observe::ObsEvent;

/// Colours given to clouds in order of appearance (sorted names).
pub const CLOUD_COLOURS: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#9c755f", "#ff9da7", "#bab0ac",
];

/// Segment kinds in legend order: (kind, group, description).
pub const SEGMENT_KINDS: &[(&str, &str)] = &[
    ("run", "user function"),
    ("read_checkpoint", "checkpoint: read"),
    ("fetch", "checkpoint: fetch input"),
    ("commit", "checkpoint: commit output"),
    ("spill", "checkpoint: spill blob"),
    ("join", "join (fan-in)"),
    ("invoke", "invoke successors"),
    ("record", "invoke: record invoked set"),
    ("finish", "finish: run record"),
    ("gc", "gc: delete run state"),
];

const ERROR_RED: &str = "#d62728";
const FAILOVER: &str = "#e6550d";

/// A protocol segment of one execution, in ms from the run start.
#[derive(Debug, Clone)]
struct Seg {
    kind: String,
    start: f64,
    end: f64,
}

/// One execution (delivery) of an instance.
#[derive(Debug, Clone)]
struct Exec {
    cloud: String,
    delivery: u32,
    start: f64,
    end: Option<f64>,
    segs: Vec<Seg>,
    error: Option<String>,
    crash: Option<String>,
    adopted: bool,
    failover: Vec<(String, String)>,
    open: bool,
    lane: usize,
}

impl Exec {
    fn cursor(&self) -> f64 {
        self.segs.last().map(|s| s.end).unwrap_or(self.start)
    }
    fn finish(&self) -> f64 {
        self.end.unwrap_or_else(|| self.cursor()).max(self.cursor())
    }
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    function: String,
    execs: Vec<Exec>,
    lanes: usize,
}

/// Everything the picture shows, computed from the events.
#[derive(Debug, Default)]
struct Model {
    rows: Vec<Row>,
    clouds: Vec<String>,
    span: f64,
    ok: Option<bool>,
    unplaced_failovers: Vec<(String, String, String)>,
    failovers: usize,
}

fn ms(t: SystemTime, t0: SystemTime) -> f64 {
    match t.duration_since(t0) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -(e.duration().as_secs_f64() * 1000.0),
    }
}

fn build(events: &[ObsEvent], run_id: &str) -> Model {
    let mine = |r: &str| r == run_id;
    let t0 = events
        .iter()
        .filter_map(|e| match e {
            ObsEvent::InstanceStart { run, at, .. } if mine(run) => Some(*at),
            ObsEvent::Action { run, start, .. } if mine(run) => Some(*start),
            _ => None,
        })
        .min();
    let mut m = Model::default();
    let Some(t0) = t0 else {
        return m;
    };
    let prefix = format!("{run_id}/");
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut crashes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut pending_failover: Vec<(String, String, String)> = Vec::new();
    let mut clouds = BTreeSet::new();
    for e in events {
        match e {
            ObsEvent::InstanceStart {
                run,
                instance,
                function,
                cloud,
                delivery,
                at,
            } if mine(run) => {
                clouds.insert(cloud.clone());
                let row = rows.entry(instance.clone()).or_insert_with(|| Row {
                    name: instance
                        .strip_prefix(&prefix)
                        .unwrap_or(instance)
                        .to_string(),
                    function: function.clone(),
                    execs: vec![],
                    lanes: 1,
                });
                let mut exec = Exec {
                    cloud: cloud.clone(),
                    delivery: *delivery,
                    start: ms(*at, t0),
                    end: None,
                    segs: vec![],
                    error: None,
                    crash: None,
                    adopted: false,
                    failover: vec![],
                    open: true,
                    lane: 0,
                };
                // A failover to this function's cloud shows on the execution it produced.
                if let Some(i) = pending_failover
                    .iter()
                    .position(|(f, _, to)| f == function && to == cloud)
                {
                    let (_, from, to) = pending_failover.remove(i);
                    exec.failover.push((from, to));
                }
                row.execs.push(exec);
            }
            ObsEvent::Action {
                run,
                instance,
                cloud,
                kind,
                start,
                elapsed,
            } if mine(run) => {
                let Some(row) = rows.get_mut(instance) else {
                    continue;
                };
                let s = ms(*start, t0);
                let seg = Seg {
                    kind: kind.to_string(),
                    start: s,
                    end: s + elapsed.as_secs_f64() * 1000.0,
                };
                // The open execution on this cloud whose last segment ended last before this one.
                let pick = row
                    .execs
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| x.open && &x.cloud == cloud && x.cursor() <= s + 0.01)
                    .max_by(|a, b| a.1.cursor().total_cmp(&b.1.cursor()))
                    .map(|(i, _)| i)
                    .or_else(|| row.execs.iter().rposition(|x| x.open));
                if let Some(i) = pick {
                    row.execs[i].segs.push(seg);
                }
            }
            ObsEvent::Crash {
                run,
                instance,
                point,
            } if mine(run) => {
                crashes
                    .entry(instance.clone())
                    .or_default()
                    .push(point.clone());
            }
            ObsEvent::InstanceEnd {
                run,
                instance,
                cloud,
                adopted,
                error,
                elapsed,
                ..
            } if mine(run) => {
                let Some(row) = rows.get_mut(instance) else {
                    continue;
                };
                let el = elapsed.as_secs_f64() * 1000.0;
                // The open execution whose segments fit within `elapsed`, latest cursor first.
                let pick = row
                    .execs
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| {
                        x.open && &x.cloud == cloud && x.cursor() <= x.start + el + 0.5
                    })
                    .max_by(|a, b| a.1.cursor().total_cmp(&b.1.cursor()))
                    .map(|(i, _)| i)
                    .or_else(|| row.execs.iter().position(|x| x.open));
                if let Some(i) = pick {
                    let x = &mut row.execs[i];
                    x.open = false;
                    x.end = Some(x.start + el);
                    x.adopted = *adopted;
                    x.error = error.clone();
                    if error.is_some() {
                        x.crash = crashes.get_mut(instance).and_then(|v| {
                            if v.is_empty() {
                                None
                            } else {
                                Some(v.remove(0))
                            }
                        });
                    }
                }
            }
            ObsEvent::Failover {
                run,
                function,
                from,
                to,
                ..
            } if mine(run) => {
                m.failovers += 1;
                pending_failover.push((function.clone(), from.clone(), to.clone()));
            }
            ObsEvent::RunFinished { run, ok } if mine(run) => {
                m.ok = Some(m.ok.unwrap_or(true) && *ok);
            }
            _ => {}
        }
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    for r in &mut rows {
        r.execs.sort_by(|a, b| a.start.total_cmp(&b.start));
        // Overlapping executions (duplicate deliveries) get lanes of their own.
        let mut lane_end: Vec<f64> = vec![];
        for x in &mut r.execs {
            match lane_end.iter().position(|&e| e <= x.start) {
                Some(l) => {
                    lane_end[l] = x.finish();
                    x.lane = l;
                }
                None => {
                    lane_end.push(x.finish());
                    x.lane = lane_end.len() - 1;
                }
            }
        }
        r.lanes = lane_end.len().max(1);
    }
    rows.sort_by(|a, b| {
        let sa = a.execs.first().map(|x| x.start).unwrap_or(0.0);
        let sb = b.execs.first().map(|x| x.start).unwrap_or(0.0);
        sa.total_cmp(&sb).then_with(|| a.name.cmp(&b.name))
    });
    m.span = rows
        .iter()
        .flat_map(|r| r.execs.iter().map(Exec::finish))
        .fold(0.0, f64::max);
    m.clouds = clouds.into_iter().collect();
    m.unplaced_failovers = pending_failover;
    m.rows = rows;
    m
}

/// Escape text for SVG/XML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Shorten to at most `n` characters, with an ellipsis.
pub fn cap(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut o: String = s.chars().take(n.saturating_sub(1)).collect();
        o.push('…');
        o
    }
}

/// The fill of a segment kind (`run` takes the cloud colour).
fn seg_fill(kind: &str, cloud_colour: &str) -> String {
    match kind {
        "run" => cloud_colour.to_string(),
        "read_checkpoint" => "url(#p-read)".into(),
        "fetch" => "url(#p-fetch)".into(),
        "commit" => "#37474f".into(),
        "spill" => "url(#p-spill)".into(),
        "join" => "#c2185b".into(),
        "invoke" => "#111111".into(),
        "record" => "url(#p-record)".into(),
        "finish" => "#ffffff".into(),
        "gc" => "url(#p-gc)".into(),
        _ => "#999999".into(),
    }
}

/// A "nice" tick step for an axis of `span` ms with about `n` ticks.
pub fn tick_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-6);
    let p = 10f64.powf(raw.log10().floor());
    for k in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if raw <= k * p {
            return k * p;
        }
    }
    10.0 * p
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

const DEFS: &str = r##"<defs>
<pattern id="p-read" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="4" height="4" fill="#ffffff"/><rect width="2" height="4" fill="#37474f"/></pattern>
<pattern id="p-fetch" width="4" height="4" patternUnits="userSpaceOnUse"><rect width="4" height="4" fill="#cfd8dc"/><circle cx="2" cy="2" r="1.1" fill="#37474f"/></pattern>
<pattern id="p-spill" width="4" height="4" patternUnits="userSpaceOnUse"><rect width="4" height="4" fill="#ffffff"/><path d="M0 0L4 4M4 0L0 4" stroke="#37474f" stroke-width="1"/></pattern>
<pattern id="p-record" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)"><rect width="4" height="4" fill="#ffffff"/><rect width="2" height="4" fill="#111111"/></pattern>
<pattern id="p-gc" width="4" height="4" patternUnits="userSpaceOnUse"><rect width="4" height="4" fill="#ffffff"/><rect width="4" height="1.3" fill="#9e9e9e"/></pattern>
<pattern id="p-err" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="2" height="6" fill="#d62728" fill-opacity="0.55"/></pattern>
<marker id="arrow-fo" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0 0L10 5L0 10z" fill="#e6550d"/></marker>
</defs>
"##;

/// A one-line account of a row's executions: failures (delivery, crash point), duplicates,
/// failovers. Empty for an instance that ran once and cleanly.
fn row_note(r: &Row) -> String {
    let mut parts = vec![];
    let ok: Vec<&Exec> = r.execs.iter().filter(|x| x.error.is_none()).collect();
    if r.execs.len() > 1 || ok.iter().any(|x| x.delivery > 1) {
        let mut seen: Vec<(String, usize)> = vec![];
        for x in ok {
            let t = format!(
                "✓ d{}{}",
                x.delivery,
                if x.adopted { " adopted" } else { "" }
            );
            match seen.iter_mut().find(|s| s.0 == t) {
                Some(s) => s.1 += 1,
                None => seen.push((t, 1)),
            }
        }
        for (t, c) in seen {
            parts.push(if c > 1 { format!("{t} ×{c}") } else { t });
        }
    }
    let failed: Vec<&Exec> = r.execs.iter().filter(|x| x.error.is_some()).collect();
    let why = |x: &Exec| match (&x.crash, &x.error) {
        (Some(p), _) => format!("crash {p}"),
        (None, Some(e)) => cap(e, 48),
        _ => String::new(),
    };
    match failed.len() {
        0 => {}
        1 => parts.push(format!("✗ d{} {}", failed[0].delivery, why(failed[0]))),
        k => {
            let mut counts: Vec<(String, usize)> = vec![];
            for x in &failed {
                let w = x.crash.clone().unwrap_or_else(|| why(x));
                match counts.iter_mut().find(|c| c.0 == w) {
                    Some(c) => c.1 += 1,
                    None => counts.push((w, 1)),
                }
            }
            counts.sort_by_key(|c| std::cmp::Reverse(c.1));
            let lo = failed.iter().map(|x| x.delivery).min().unwrap_or(0);
            let hi = failed.iter().map(|x| x.delivery).max().unwrap_or(0);
            let list: Vec<String> = counts
                .iter()
                .map(|(w, c)| {
                    if *c > 1 {
                        format!("{w} ×{c}")
                    } else {
                        w.clone()
                    }
                })
                .collect();
            let ds = if lo == hi {
                format!("d{lo}")
            } else {
                format!("d{lo}–d{hi}")
            };
            parts.push(format!("✗ {k} failed ({ds}): {}", list.join(", ")));
        }
    }
    for x in &r.execs {
        for (from, to) in &x.failover {
            parts.push(format!("failover {from} → {to}"));
        }
    }
    parts.join(" · ")
}

/// Draw the run `run_id` from `events` as an SVG Gantt chart.
pub fn render(events: &[ObsEvent], run_id: &str) -> String {
    let m = build(events, run_id);
    let colour = |cloud: &str| -> &'static str {
        let i = m.clouds.iter().position(|c| c == cloud).unwrap_or(0);
        CLOUD_COLOURS[i % CLOUD_COLOURS.len()]
    };
    let n = m.rows.len();
    let base_h: f64 = if n == 0 {
        22.0
    } else {
        (560.0 / n as f64).clamp(5.0, 22.0)
    };
    let font = (base_h - 3.0).clamp(7.0, 12.0);
    let stride = ((font + 1.0) / base_h).ceil().max(1.0) as usize;
    let label_w = 240.0;
    let plot_w = 900.0;
    let right = 330.0;
    let width = label_w + plot_w + right;
    let left = label_w;
    let span = if m.span > 0.0 { m.span } else { 1.0 };
    let x = |t: f64| left + (t.max(0.0) / span) * plot_w;

    let executions: usize = m.rows.iter().map(|r| r.execs.len()).sum();
    let failed: usize = m
        .rows
        .iter()
        .flat_map(|r| &r.execs)
        .filter(|x| x.error.is_some())
        .count();

    // Header: title, summary, legends.
    let mut head = String::new();
    let title_y = 24.0;
    let _ = writeln!(
        head,
        r##"<text x="16" y="{title_y}" font-size="17" font-weight="bold">joint run {}</text>"##,
        esc(run_id)
    );
    let outcome = match m.ok {
        Some(true) => "succeeded",
        Some(false) => "FAILED",
        None => "no run record seen",
    };
    let _ = writeln!(
        head,
        r##"<text x="16" y="{}" font-size="12" fill="#333">{} · {:.1} ms from first start to last action · {} instances · {} executions ({} failed) · {} failovers · clouds: {}</text>"##,
        title_y + 18.0,
        outcome,
        m.span,
        n,
        executions,
        failed,
        m.failovers,
        esc(&m.clouds.join(", "))
    );
    // Legend: clouds.
    let mut ly = title_y + 40.0;
    let mut lx = 16.0;
    let _ = writeln!(
        head,
        r##"<text x="{lx}" y="{}" font-size="11" font-weight="bold">clouds (bar tint = where the execution ran):</text>"##,
        ly + 10.0
    );
    lx += 290.0;
    for c in &m.clouds {
        let col = colour(c);
        let _ = writeln!(
            head,
            r##"<g class="legend-cloud"><rect x="{lx}" y="{ly}" width="22" height="12" fill="{col}" fill-opacity="0.3" stroke="{col}" stroke-width="1.5"/><text x="{}" y="{}" font-size="11">{}</text></g>"##,
            lx + 27.0,
            ly + 10.0,
            esc(c)
        );
        lx += 40.0 + 7.0 * c.chars().count() as f64;
    }
    // Legend: segment kinds.
    ly += 20.0;
    let _ = writeln!(
        head,
        r##"<text x="16" y="{}" font-size="11" font-weight="bold">segments:</text>"##,
        ly + 10.0
    );
    let mut lx = 90.0;
    let first_cloud_colour = m.clouds.first().map(|c| colour(c)).unwrap_or("#4e79a7");
    for (i, (kind, desc)) in SEGMENT_KINDS.iter().enumerate() {
        if i == 5 {
            ly += 18.0;
            lx = 90.0;
        }
        let _ = writeln!(
            head,
            r##"<g class="legend-kind"><rect x="{lx}" y="{ly}" width="22" height="12" fill="{}" stroke="#222" stroke-width="0.6"/><text x="{}" y="{}" font-size="11"><tspan font-weight="bold">{kind}</tspan> {}</text></g>"##,
            seg_fill(kind, first_cloud_colour),
            lx + 27.0,
            ly + 10.0,
            esc(&if *kind == "run" {
                format!("{desc} (cloud colour)")
            } else {
                desc.to_string()
            })
        );
        lx += 34.0 + 6.3 * (kind.len() + desc.len() + if *kind == "run" { 15 } else { 1 }) as f64;
    }
    ly += 18.0;
    let _ = writeln!(
        head,
        r##"<g class="legend-marks"><rect x="90" y="{ly}" width="22" height="12" fill="url(#p-err)" stroke="{ERROR_RED}" stroke-width="1.5"/><text x="117" y="{}" font-size="11">execution ended with an error (d<tspan font-style="italic">N</tspan> = delivery; the platform redelivers)</text><path d="M560 {} h22" stroke="{FAILOVER}" stroke-width="2" marker-end="url(#arrow-fo)"/><text x="588" y="{}" font-size="11">failover from → to (the invocation moved to a replica cloud)</text><text x="930" y="{}" font-size="11" fill="#555">bar behind the segments = the whole execution, tinted by cloud</text></g>"##,
        ly + 10.0,
        ly + 6.0,
        ly + 10.0,
        ly + 10.0
    );

    let axis_y = ly + 40.0;
    let top = axis_y + 6.0;
    // Rows.
    let mut body = String::new();
    let mut zebra = String::new();
    let mut y = top;
    let mut row_tops = Vec::with_capacity(n);
    for (ri, r) in m.rows.iter().enumerate() {
        let h = base_h * r.lanes as f64;
        row_tops.push(y);
        if ri % 2 == 1 {
            let _ = writeln!(
                zebra,
                r##"<rect x="0" y="{y:.2}" width="{}" height="{h:.2}" fill="#f4f4f4"/>"##,
                width
            );
        }
        y += h;
    }
    let bottom = y;
    // Grid and axes.
    let step = tick_step(span, 10.0);
    let mut grid = String::new();
    let mut t = 0.0;
    while t <= span + step * 0.001 {
        let gx = x(t);
        let _ = writeln!(
            grid,
            r##"<line x1="{gx:.2}" y1="{top:.2}" x2="{gx:.2}" y2="{bottom:.2}" stroke="#dddddd" stroke-width="1"/><text x="{gx:.2}" y="{:.2}" font-size="10" text-anchor="middle" fill="#444">{}</text><text x="{gx:.2}" y="{:.2}" font-size="10" text-anchor="middle" fill="#444">{}</text>"##,
            axis_y - 2.0,
            fmt_ms(t),
            bottom + 13.0,
            fmt_ms(t)
        );
        t += step;
    }
    let _ = writeln!(
        grid,
        r##"<text x="{}" y="{:.2}" font-size="10" text-anchor="end" fill="#444">ms from run start</text><line x1="{left}" y1="{top:.2}" x2="{left}" y2="{bottom:.2}" stroke="#888"/>"##,
        left - 6.0,
        axis_y - 2.0
    );
    for (ri, r) in m.rows.iter().enumerate() {
        let ry = row_tops[ri];
        let row_cloud = r
            .execs
            .iter()
            .find(|x| x.error.is_none())
            .or(r.execs.first())
            .map(|x| x.cloud.as_str())
            .unwrap_or("");
        let _ = writeln!(
            body,
            r##"<g class="row" data-instance="{}">"##,
            esc(&r.name)
        );
        let _ = writeln!(
            body,
            "<title>{} ({}) — {} execution(s)</title>",
            esc(&r.name),
            esc(&r.function),
            r.execs.len()
        );
        if ri % stride == 0 {
            let ty = ry + base_h / 2.0 + font * 0.35;
            let max_chars = ((label_w - 30.0) / (font * 0.58)) as usize;
            let _ = writeln!(
                body,
                r##"<rect x="8" y="{:.2}" width="8" height="{:.2}" fill="{}"/><text x="22" y="{ty:.2}" font-size="{font:.1}" font-family="monospace">{}</text>"##,
                ry + base_h * 0.15,
                base_h * 0.7,
                colour(row_cloud),
                esc(&cap(&r.name, max_chars.max(8)))
            );
        }
        for xq in &r.execs {
            let col = colour(&xq.cloud);
            let ly0 = ry + base_h * xq.lane as f64;
            let pad = (base_h * 0.12).min(3.0);
            let (bx0, bx1) = (x(xq.start), x(xq.finish()).max(x(xq.start) + 1.5));
            let bh = base_h - 2.0 * pad;
            let by = ly0 + pad;
            let _ = writeln!(
                body,
                r##"<g class="exec" data-cloud="{}" data-delivery="{}"><title>{} on {} · delivery {} · {:.1}–{:.1} ms{}{}</title>"##,
                esc(&xq.cloud),
                xq.delivery,
                esc(&r.name),
                esc(&xq.cloud),
                xq.delivery,
                xq.start,
                xq.finish(),
                if xq.adopted {
                    " · adopted an existing output"
                } else {
                    ""
                },
                xq.error
                    .as_ref()
                    .map(|e| format!(" · error: {}", esc(e)))
                    .unwrap_or_default()
            );
            // The execution: a bar tinted by cloud, the segments inset in it (the user function
            // last, so a sub-millisecond one still shows).
            let _ = writeln!(
                body,
                r##"<rect x="{bx0:.2}" y="{by:.2}" width="{:.2}" height="{bh:.2}" fill="{col}" fill-opacity="0.5" stroke="{col}" stroke-width="1.2"/>"##,
                bx1 - bx0,
            );
            let inset = if bh >= 8.0 { bh * 0.2 } else { 0.0 };
            let (sy, sh) = (by + inset, bh - 2.0 * inset);
            let mut segs: Vec<&Seg> = xq.segs.iter().collect();
            segs.sort_by_key(|s| s.kind == "run");
            for s in segs {
                let sx0 = x(s.start);
                let sw = (x(s.end) - sx0).max(if s.kind == "run" { 2.0 } else { 1.2 });
                let (by, bh) = (sy, sh);
                let _ = writeln!(
                    body,
                    r##"<rect class="seg seg-{}" x="{sx0:.2}" y="{by:.2}" width="{sw:.2}" height="{bh:.2}" fill="{}" stroke="{}" stroke-width="0.5"><title>{} · {:.1} ms at {:.1} ms</title></rect>"##,
                    esc(&s.kind),
                    seg_fill(&s.kind, col),
                    if s.kind == "run" { "#222" } else { "#555" },
                    esc(&s.kind),
                    s.end - s.start,
                    s.start
                );
            }
            if xq.error.is_some() {
                let _ = writeln!(
                    body,
                    r##"<rect x="{bx0:.2}" y="{by:.2}" width="{:.2}" height="{bh:.2}" fill="url(#p-err)" stroke="{ERROR_RED}" stroke-width="1.6"/>"##,
                    bx1 - bx0
                );
            }
            let tag = format!("d{}", xq.delivery);
            let tag_font = (font - 2.0).max(7.0);
            if (r.execs.len() > 1 || xq.delivery > 1)
                && bh >= tag_font
                && bx1 - bx0 >= tag.len() as f64 * tag_font * 0.62 + 4.0
            {
                let _ = writeln!(
                    body,
                    r##"<text class="delivery" x="{:.2}" y="{:.2}" font-size="{tag_font:.1}" font-weight="bold" text-anchor="middle" fill="{}" stroke="#ffffff" stroke-width="2.5" paint-order="stroke">{tag}</text>"##,
                    (bx0 + bx1) / 2.0,
                    by + bh / 2.0 + tag_font * 0.35,
                    if xq.error.is_some() {
                        ERROR_RED
                    } else {
                        "#111"
                    }
                );
            }
            for _ in &xq.failover {
                let ay = by + bh / 2.0;
                let _ = writeln!(
                    body,
                    r##"<path d="M{:.2} {ay:.2} h14" stroke="{FAILOVER}" stroke-width="2" marker-end="url(#arrow-fo)"/>"##,
                    bx0 - 16.0
                );
            }
            body.push_str("</g>\n");
        }
        // What happened to the row, in the notes column on the right.
        let note = row_note(r);
        if !note.is_empty() && ri % stride == 0 {
            let nf = (font - 1.0).max(7.0);
            let fill = if r.execs.iter().any(|x| x.error.is_some()) {
                ERROR_RED
            } else if r.execs.iter().any(|x| !x.failover.is_empty()) {
                FAILOVER
            } else {
                "#333"
            };
            let max_chars = ((right - 12.0) / (nf * 0.56)) as usize;
            let _ = writeln!(
                body,
                r##"<text class="note" x="{:.2}" y="{:.2}" font-size="{nf:.1}" fill="{fill}">{}<title>{}</title></text>"##,
                left + plot_w + 10.0,
                ry + base_h / 2.0 + font * 0.33,
                esc(&cap(&note, max_chars)),
                esc(&note)
            );
        }
        body.push_str("</g>\n");
    }
    let mut foot = String::new();
    let mut fy = bottom + 32.0;
    if n == 0 {
        let _ = writeln!(
            foot,
            r##"<text x="16" y="{fy}" font-size="13">no events were recorded for run {}</text>"##,
            esc(run_id)
        );
        fy += 18.0;
    }
    for (f, from, to) in &m.unplaced_failovers {
        let _ = writeln!(
            foot,
            r##"<text x="16" y="{fy}" font-size="11" fill="{FAILOVER}">failover of {} {} → {} (no execution on {} was observed)</text>"##,
            esc(f),
            esc(from),
            esc(to),
            esc(to)
        );
        fy += 16.0;
    }
    let height = fy + 8.0;
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = writeln!(
        out,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif">"##
    );
    out.push_str(DEFS);
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    out.push_str(&head);
    // Zebra first, then grid, then bars.
    out.push_str(&zebra);
    out.push_str(&grid);
    out.push_str(&body);
    out.push_str(&foot);
    out.push_str("</svg>\n");
    out
}

/// Render the run into `path`. `run_id` is the run the report named; without one (the run did not
/// produce a report) the run of the first recorded instance is drawn.
pub fn write(
    path: &std::path::Path,
    events: &[ObsEvent],
    run_id: Option<&str>,
) -> Result<(), String> {
    let id = run_id.map(str::to_string).or_else(|| {
        events.iter().find_map(|e| match e {
            ObsEvent::InstanceStart { run, .. } => Some(run.clone()),
            _ => None,
        })
    });
    let svg = render(events, id.as_deref().unwrap_or("(no run)"));
    std::fs::write(path, svg)
        .map_err(|e| format!("--timeline: cannot write {}: {e}", path.display()))?;
    eprintln!("timeline: {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms)
    }

    fn start(inst: &str, cloud: &str, d: u32, t: u64) -> ObsEvent {
        ObsEvent::InstanceStart {
            run: "r".into(),
            instance: format!("r/{inst}"),
            function: inst.split('_').next().unwrap().into(),
            cloud: cloud.into(),
            delivery: d,
            at: at(t),
        }
    }
    fn action(inst: &str, cloud: &str, kind: &'static str, t: u64, d: u64) -> ObsEvent {
        ObsEvent::Action {
            run: "r".into(),
            instance: format!("r/{inst}"),
            cloud: cloud.into(),
            kind,
            start: at(t),
            elapsed: Duration::from_millis(d),
        }
    }
    fn end(inst: &str, cloud: &str, err: Option<&str>, el: u64) -> ObsEvent {
        ObsEvent::InstanceEnd {
            run: "r".into(),
            instance: format!("r/{inst}"),
            function: inst.split('_').next().unwrap().into(),
            cloud: cloud.into(),
            ran_function: true,
            adopted: false,
            error: err.map(str::to_string),
            elapsed: Duration::from_millis(el),
        }
    }

    fn sample() -> Vec<ObsEvent> {
        vec![
            start("A_1", "local-a", 1, 0),
            action("A_1", "local-a", "run", 0, 2),
            action("A_1", "local-a", "commit", 2, 6),
            ObsEvent::Crash {
                run: "r".into(),
                instance: "r/A_1".into(),
                point: "before:invoke".into(),
            },
            end("A_1", "local-a", Some("injected crash at before:invoke"), 8),
            start("A_1", "local-a", 2, 20),
            action("A_1", "local-a", "read_checkpoint", 20, 6),
            action("A_1", "local-a", "invoke", 26, 28),
            end("A_1", "local-a", None, 34),
            ObsEvent::Failover {
                run: "r".into(),
                function: "B".into(),
                from: "local-b".into(),
                to: "local-c".into(),
                error: "throttled".into(),
            },
            start("B_2", "local-c", 1, 55),
            action("B_2", "local-c", "run", 55, 1),
            action("B_2", "local-c", "join", 56, 6),
            action("B_2", "local-c", "finish", 62, 6),
            action("B_2", "local-c", "gc", 68, 3),
            end("B_2", "local-c", None, 16),
            ObsEvent::RunFinished {
                run: "r".into(),
                ok: true,
            },
            // Another run's events are ignored.
            ObsEvent::InstanceStart {
                run: "other".into(),
                instance: "other/Z_1".into(),
                function: "Z".into(),
                cloud: "local-z".into(),
                delivery: 1,
                at: at(0),
            },
        ]
    }

    #[test]
    fn model_matches_events() {
        let m = build(&sample(), "r");
        assert_eq!(m.rows.len(), 2);
        assert_eq!(m.rows[0].name, "A_1");
        assert_eq!(m.rows[0].execs.len(), 2);
        assert_eq!(m.rows[0].execs[0].crash.as_deref(), Some("before:invoke"));
        assert_eq!(m.rows[0].execs[0].segs.len(), 2);
        assert_eq!(m.rows[0].execs[1].segs.len(), 2);
        assert_eq!(m.rows[0].lanes, 1, "sequential executions share a lane");
        assert_eq!(
            m.rows[1].execs[0].failover,
            vec![("local-b".to_string(), "local-c".to_string())]
        );
        assert_eq!(m.clouds, vec!["local-a", "local-c"]);
        assert!((m.span - 71.0).abs() < 0.01, "{}", m.span);
        assert_eq!(m.ok, Some(true));
    }

    #[test]
    fn duplicates_get_lanes() {
        let ev = vec![
            start("A_1", "c", 1, 0),
            start("A_1", "c", 1, 1),
            action("A_1", "c", "commit", 0, 6),
            action("A_1", "c", "commit", 1, 6),
            end("A_1", "c", None, 6),
            end("A_1", "c", None, 6),
        ];
        let m = build(&ev, "r");
        assert_eq!(m.rows[0].lanes, 2);
        assert!(m.rows[0].execs.iter().all(|x| x.segs.len() == 1 && !x.open));
    }

    #[test]
    fn svg_shows_everything() {
        let svg = render(&sample(), "r");
        assert!(svg.starts_with("<?xml"));
        assert_eq!(svg.matches("<g class=\"row\"").count(), 2);
        for k in [
            "run",
            "commit",
            "read_checkpoint",
            "invoke",
            "join",
            "finish",
            "gc",
        ] {
            assert!(svg.contains(&format!("seg-{k}\"")), "{k}");
        }
        assert!(svg.contains("✗ d1 crash before:invoke"));
        assert!(svg.contains("failover local-b → local-c"));
        assert!(svg.contains(">local-a</text>") && svg.contains(">local-c</text>"));
        assert!(!svg.contains("local-z"));
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
    }

    #[test]
    fn empty_and_large() {
        let svg = render(&[], "nothing");
        assert!(svg.contains("no events were recorded for run nothing"));
        assert!(svg.ends_with("</svg>\n"));
        let mut ev = vec![];
        for i in 0..300u64 {
            let name = format!("a_very_long_function_name_for_testing_{i}_1-bindex-{i}");
            ev.push(start(&name, "c", 1, i));
            ev.push(action(&name, "c", "run", i, 1));
            ev.push(end(&name, "c", None, 1));
        }
        let svg = render(&ev, "r");
        assert_eq!(svg.matches("<g class=\"row\"").count(), 300);
        // Labels are thinned and capped.
        assert!(svg.matches("font-family=\"monospace\"").count() < 300);
        assert!(svg.contains('…'));
        let h: f64 = svg
            .split("height=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        assert!(h < 2200.0, "{h}");
    }

    /// Real runtime events of a run whose middle function fails over to its replica cloud.
    #[tokio::test]
    async fn real_failover_run() {
        use std::sync::Arc;
        let def = "workflow: fo
functions:
  - {name: a, cloud: one, handler: inc, next: [{to: b}]}
  - {name: b, cloud: two, failover: [three], handler: inc, next: [{to: c}]}
  - {name: c, cloud: one, handler: inc}
";
        let w = Arc::new(joint_core::compile::load("fo.yaml", def).unwrap());
        let rec = joint_shim::observe::Recorder::new();
        let opts = joint_shim_local::runner::RunOptions::default();
        let dep = joint_shim_local::runner::deploy(
            w,
            crate::base_handlers(),
            &opts,
            Some(Arc::new(rec.clone())),
        )
        .unwrap();
        dep.clouds.faas["two"].set_down(true);
        dep.runtime
            .start("fo1", serde_json::json!(1))
            .await
            .unwrap();
        dep.clouds.idle().await;
        let svg = render(&rec.events(), "fo1");
        if let Ok(dir) = std::env::var("JOINT_PICTURES_OUT") {
            std::fs::write(std::path::Path::new(&dir).join("failover-run.svg"), &svg).unwrap();
        }
        assert_eq!(svg.matches("<g class=\"row\"").count(), 3);
        assert!(svg.contains("failover two → three"), "{svg}");
        assert!(svg.contains("1 failovers"));
        assert!(svg.contains("data-cloud=\"three\""));
    }

    #[test]
    fn helpers() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(cap("abcdef", 4), "abc…");
        assert_eq!(tick_step(200.0, 10.0), 20.0);
        assert_eq!(tick_step(7.0, 10.0), 1.0);
    }
}
