//! The Google Photos library (EXPORTS.md §1.8): yearly folders and an
//! album of media with their sidecars (cut names, duplicates, edited
//! copies, legacy `.json`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::records::G;
use crate::gen::{MediaKind, Planned};
use crate::util::{alnum, google_formatted, json_text, pick, sub_seed, words, NAMES};
use crate::{Ctx, Era};

/// Sidecar name of a Google Photos media file (EXPORTS §1.8).
pub(crate) fn sidecar_name(media: &str, dup: Option<u32>, legacy: bool) -> String {
    let dup_text = dup.map(|n| format!("({n})")).unwrap_or_default();
    if legacy {
        let base = format!("{media}{dup_text}");
        let cut: String = base.chars().take(46).collect();
        format!("{cut}.json")
    } else {
        let full_suffix = ".supplemental-metadata";
        let room = 51usize.saturating_sub(media.chars().count() + dup_text.len() + 5);
        let suffix: String = full_suffix.chars().take(room.max(1)).collect();
        format!("{media}{suffix}{dup_text}.json")
    }
}

pub(super) fn photos(ctx: &Ctx, budget: f64, out: &mut Vec<Planned>) {
    let legacy = ctx.era == Era::Legacy;
    let root = "Takeout/Google Photos";
    let mut rng = StdRng::seed_from_u64(sub_seed(ctx.seed, "photos"));
    let avg = (budget / 60.0).clamp(1024.0, 3.0 * 1024.0 * 1024.0);
    let n = ((budget / avg) as u64).clamp(6, 100_000);
    let album = "Trip to Lisbon";
    let mut album_files: Vec<Planned> = Vec::new();
    let mut t = ctx.export_ms - 2 * 86_400_000;
    let mut by_folder: Vec<(String, Vec<Planned>)> = Vec::new();
    for i in 0..n {
        t -= rng.gen_range(3_600_000..15 * 86_400_000);
        let tm = crate::util::tm(t);
        let video = i % 10 == 9;
        let (name, kind) = match i % 23 {
            15 if !video => (
                format!(
                    "PXL_{:04}{:02}{:02}_{:06}123.LONG_EXPOSURE-01.COVER.jpg",
                    tm.year, tm.month, tm.day, i
                ),
                MediaKind::Jpeg,
            ),
            7 => (
                format!(
                    "PXL_{:04}{:02}{:02}_{:06}123.NIGHT.PORTRAIT.jpg",
                    tm.year, tm.month, tm.day, i
                ),
                MediaKind::Jpeg,
            ),
            _ if video => (
                format!(
                    "VID_{:04}{:02}{:02}_{:06}.mp4",
                    tm.year, tm.month, tm.day, i
                ),
                MediaKind::Mp4,
            ),
            _ => (
                format!(
                    "IMG_{:04}{:02}{:02}_{:06}.jpg",
                    tm.year, tm.month, tm.day, i
                ),
                MediaKind::Jpeg,
            ),
        };
        let size = ((avg * rng.gen_range(0.5..1.5)) as u64).max(200);
        let folder = format!("{root}/Photos from {}", tm.year);
        let upload = t + rng.gen_range(60_000..86_400_000);
        let mut sidecar = json!({"title": name, "description": if i % 4 == 0 { words(&mut rng, 2, 5) } else { String::new() },
            "imageViews": rng.gen_range(0..40).to_string(),
            "creationTime": {"timestamp": (upload / 1000).to_string(), "formatted": google_formatted(upload)},
            "photoTakenTime": {"timestamp": (t / 1000).to_string(), "formatted": google_formatted(t)},
            "geoData": {"latitude": 38.71 + rng.gen_range(0.0..0.1), "longitude": -9.14, "altitude": 12.0, "latitudeSpan": 0.0, "longitudeSpan": 0.0},
            "url": format!("https://photos.google.com/photo/AF1Qip{}", alnum(&mut rng, 30)),
            "googlePhotosOrigin": {"mobileUpload": {"deviceType": "ANDROID_PHONE"}}});
        if i % 3 == 0 {
            if let Some(o) = sidecar.as_object_mut() {
                o.insert("people".into(), json!([{"name": pick(&mut rng, NAMES)}]));
            }
        }
        let seed = sub_seed(ctx.seed, &format!("photo-{i}"));
        let mut files = vec![
            Planned::media(format!("{folder}/{name}"), kind, size, seed),
            Planned::bytes(
                format!("{folder}/{}", sidecar_name(&name, None, legacy)),
                json_text(&sidecar, G, 0),
            ),
        ];
        if i % 11 == 5 && !video {
            // An edited copy: no sidecar of its own.
            let edited = name.replace(".jpg", "-edited.jpg");
            files.push(Planned::media(
                format!("{folder}/{edited}"),
                kind,
                size,
                seed ^ 1,
            ));
        }
        if i % 13 == 6 && !video {
            // A second file with the same name: IMG(1).jpg and its "(1)" sidecar.
            let dup_name = name.replace(".jpg", "(1).jpg");
            files.push(Planned::media(
                format!("{folder}/{dup_name}"),
                kind,
                size / 2 + 1,
                seed ^ 2,
            ));
            let mut s2 = sidecar.clone();
            if let Some(o) = s2.as_object_mut() {
                o.insert("title".into(), json!(name));
            }
            files.push(Planned::bytes(
                format!("{folder}/{}", sidecar_name(&name, Some(1), legacy)),
                json_text(&s2, G, 0),
            ));
        }
        if i % 5 == 2 {
            album_files.push(Planned::media(
                format!("{root}/{album}/{name}"),
                kind,
                size,
                seed,
            ));
            album_files.push(Planned::bytes(
                format!("{root}/{album}/{}", sidecar_name(&name, None, legacy)),
                json_text(&sidecar, G, 0),
            ));
        }
        match by_folder.iter_mut().find(|(f, _)| *f == folder) {
            Some((_, v)) => v.extend(files),
            None => by_folder.push((folder, files)),
        }
    }
    album_files.push(Planned::bytes(
        format!("{root}/{album}/metadata.json"),
        json_text(
            &json!({"title": album, "description": "", "access": "protected",
            "date": {"timestamp": (t / 1000).to_string(), "formatted": google_formatted(t)}}),
            G,
            0,
        ),
    ));
    by_folder.push((format!("{root}/{album}"), album_files));
    by_folder.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, mut files) in by_folder {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        out.extend(files);
    }
}
