//! The ratios of the main table as a horizontal bar chart (SVG): each
//! sessionkit cell's req/s over the bare framework and over the better peer.

use std::path::Path;

use plotters::prelude::*;

use crate::cells::table::VariantRun;
use crate::report::Lookup;

const WIDTH: i32 = 960;
const LEFT: i32 = 250;
const RIGHT: i32 = 70;
const TOP: i32 = 70;
const ROW: i32 = 30;
const BARE: RGBColor = RGBColor(70, 120, 190);
const PEER: RGBColor = RGBColor(230, 140, 40);

pub fn draw(runs: &[VariantRun], path: &Path, machine: &str) -> Result<(), String> {
    let at = Lookup(runs);
    let mut rows = Vec::new();
    for run in runs {
        if run.variant.is_bare() || run.variant.is_peer() {
            continue;
        }
        for cell in &run.cells {
            rows.push((
                format!("{} {}", run.variant.name(), cell.route.name()),
                at.ratio(run.variant, cell.route),
                at.peer_ratio(run.variant, cell.route),
            ));
        }
    }
    if rows.is_empty() {
        return Err("no sessionkit cell was measured".into());
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let max = rows
        .iter()
        .flat_map(|r| [r.1, r.2])
        .flatten()
        .fold(1.5f64, f64::max)
        * 1.05;
    let height = TOP + ROW * rows.len() as i32 + 40;
    let err = |e: DrawingAreaErrorKind<_>| format!("{}: {e:?}", path.display());
    let root = SVGBackend::new(path, (WIDTH as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let font = |size: i32| ("sans-serif", size).into_font();
    let x_of = |v: f64| LEFT + ((v / max) * f64::from(WIDTH - LEFT - RIGHT)) as i32;
    root.draw(&Text::new(
        "sessionkit-bench: req/s ratios".to_owned(),
        (10, 8),
        font(18),
    ))
    .map_err(err)?;
    root.draw(&Text::new(machine.to_owned(), (10, 30), font(11)))
        .map_err(err)?;
    for (i, (label, color)) in [("vs bare framework", BARE), ("vs better peer", PEER)]
        .into_iter()
        .enumerate()
    {
        let x = LEFT + i as i32 * 180;
        root.draw(&Rectangle::new([(x, 48), (x + 12, 60)], color.filled()))
            .map_err(err)?;
        root.draw(&Text::new(label.to_owned(), (x + 18, 48), font(12)))
            .map_err(err)?;
    }
    let bottom = TOP + ROW * rows.len() as i32;
    // Grid: every 0.5x, with 1x darker.
    let mut tick = 0.0;
    while tick <= max {
        let x = x_of(tick);
        let shade = if (tick - 1.0).abs() < 1e-9 {
            &BLACK
        } else {
            &RGBColor(210, 210, 210)
        };
        root.draw(&PathElement::new(vec![(x, TOP - 4), (x, bottom)], shade))
            .map_err(err)?;
        root.draw(&Text::new(
            format!("{tick:.1}x"),
            (x - 10, bottom + 6),
            font(11),
        ))
        .map_err(err)?;
        tick += 0.5;
    }
    for (i, (label, bare, peer)) in rows.iter().enumerate() {
        let y = TOP + ROW * i as i32;
        root.draw(&Text::new(label.clone(), (10, y + 8), font(13)))
            .map_err(err)?;
        for (j, (value, color)) in [(bare, BARE), (peer, PEER)].into_iter().enumerate() {
            let Some(v) = value else { continue };
            let y0 = y + 3 + j as i32 * 12;
            root.draw(&Rectangle::new(
                [(LEFT, y0), (x_of(*v).max(LEFT + 1), y0 + 11)],
                color.filled(),
            ))
            .map_err(err)?;
            root.draw(&Text::new(format!("{v:.2}x"), (x_of(*v) + 4, y0), font(10)))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
