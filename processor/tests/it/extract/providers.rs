//! Facebook and Amazon paths, and the manifest of an archive.

use super::*;

#[tokio::test]
async fn facebook_paths() {
    for era in [Era::Current, Era::Legacy] {
        let env = mem_env();
        let o = opts(Provider::Facebook, Format::Zip, 1, era);
        let dumps = env.dumps(&o).await;
        let (cut, cut_s) = match era {
            Era::Current => ("2024-06-01", 1_717_200_000i64),
            Era::Legacy => ("2021-01-01", 1_609_459_200),
        };
        let paths = [
            "posts",
            "comments",
            "likes_and_reactions",
            "friends",
            "messages",
            "photos_and_videos",
            "profile_information",
        ];
        let mut scopes: Vec<String> = paths.iter().map(|p| format!("facebook.{p}")).collect();
        scopes.push(format!("facebook.posts[timestamp>={cut}].*"));
        scopes.push(format!("facebook.messages[timestamp_ms>={cut}].*"));
        scopes.push("facebook.profile_information[username=\"jo.example\"].{name}".into());
        scopes.push(format!(
            "facebook.photos_and_videos[creation_timestamp>={cut}].*"
        ));
        let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let built = env.build(&dumps, &refs).await;
        for (p, a) in paths.iter().zip(&built) {
            let z = env.open(a).await;
            assert!(names(&z).len() >= 2, "{era:?} {p}: {:?}", names(&z));
            assert!(a.skipped.is_empty(), "{p}: {:?}", a.skipped);
        }
        // Filtered posts keep only recent posts and the photos they name.
        let mut whole = env.open(&built[0]).await;
        let mut z = env.open(&built[7]).await;
        let post_file = names(&z)
            .into_iter()
            .find(|n| n.contains("your_posts"))
            .unwrap();
        let posts = json(&mut z, &post_file);
        let all_posts = json(&mut whole, &post_file);
        assert!(posts.as_array().unwrap().len() < all_posts.as_array().unwrap().len());
        let uris: HashSet<String> = posts
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["attachments"].as_array().cloned().unwrap_or_default())
            .flat_map(|a| a["data"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| d["media"]["uri"].as_str().map(str::to_owned))
            .collect();
        let jpgs: HashSet<String> = names(&z)
            .into_iter()
            .filter(|n| n.ends_with(".jpg"))
            .collect();
        assert_eq!(uris, jpgs, "{era:?}");
        for p in posts.as_array().unwrap() {
            assert!(p["timestamp"].as_i64().unwrap() >= cut_s);
        }
        // Messages: context kept, media follow.
        let mut z = env.open(&built[8]).await;
        for n in names(&z)
            .into_iter()
            .filter(|n| n.ends_with("message_1.json"))
        {
            let v = json(&mut z, &n);
            assert!(v["participants"].is_array() && v["title"].is_string());
            for m in v["messages"].as_array().unwrap() {
                assert!(m["timestamp_ms"].as_i64().unwrap() >= cut_s * 1000);
            }
        }
        // Profile: mojibake kept in the output, matched on repaired text.
        let mut z = env.open(&built[9]).await;
        let n = names(&z)
            .into_iter()
            .find(|n| n.ends_with("profile_information.json"))
            .unwrap();
        let raw = String::from_utf8(text(&mut z, &n)).unwrap();
        // Projected values are re-encoded: the same JSON strings (mojibake
        // decoded by JSON, not repaired), not the same escapes.
        assert!(raw.contains("Ex\u{c3}\u{a4}mple"), "{raw}");
        let m = json(&mut z, "manifest.json");
        assert!(m["notes"][0].as_str().unwrap().contains("latin-1"));
        // Albums: photos filtered by upload time, media follow.
        let z = env.open(&built[10]).await;
        let whole_albums = env.open(&built[5]).await;
        let count = |z: &Zip| names(z).iter().filter(|n| n.ends_with(".jpg")).count();
        assert!(count(&z) < count(&whole_albums), "{era:?}");
    }
}

#[tokio::test]
async fn amazon_paths() {
    for era in [Era::Current, Era::Legacy] {
        let env = file_env();
        let o = opts(Provider::Amazon, Format::Zip, 1, era);
        let dumps = env.dumps(&o).await;
        let (cut, cut_year) = match era {
            Era::Current => ("2022-01-01", 2022),
            Era::Legacy => ("2019-01-01", 2019),
        };
        let scopes = [
            format!("amazon.retail.order_history[\"Order Date\">={cut}].*"),
            format!("amazon.digital.orders[OrderDate>={cut}].{{OrderDate,ASIN}}"),
            format!("amazon.audible.library[DateAdded>={cut}].*"),
            format!("amazon.alexa.voice_history[Timestamp>={cut}].*"),
            "amazon.*".to_owned(),
        ];
        let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let built = env.build(&dumps, &refs).await;
        let mut z = env.open(&built[0]).await;
        let f = "Retail.OrderHistory.1/Retail.OrderHistory.1.csv";
        let body = text(&mut z, f);
        assert!(body.starts_with(b"\xEF\xBB\xBF\"Website\""));
        let mut rdr = csv::ReaderBuilder::new().from_reader(&body[3..]);
        let h = rdr.headers().unwrap().clone();
        let i = h.iter().position(|c| c == "Order Date").unwrap();
        let mut n = 0;
        for r in rdr.records() {
            let d = r.unwrap()[i].to_owned();
            let year: i32 = if d.contains('/') {
                d[6..10].parse().unwrap()
            } else {
                d[..4].parse().unwrap()
            };
            assert!(year >= cut_year, "{era:?} {d}");
            n += 1;
        }
        assert!(n > 0, "{era:?}");
        let mut z = env.open(&built[1]).await;
        let items = text(&mut z, "Digital-Ordering.1/Digital Items.csv");
        assert!(
            items.starts_with(b"\xEF\xBB\xBFOrderDate,ASIN\r\n"),
            "{}",
            String::from_utf8_lossy(&items[..40])
        );
        let mut z = env.open(&built[2]).await;
        let lib = String::from_utf8(text(&mut z, "Audible.Library/Audible.Library.csv")).unwrap();
        for line in lib.lines().skip(1) {
            let y: i32 = line[8..12].parse().unwrap();
            assert!(y >= cut_year, "{line}");
        }
        // Alexa recordings follow the kept rows that name them.
        let mp3 = |z: &Zip| names(z).iter().filter(|n| n.ends_with(".mp3")).count();
        for (i, a) in [(3usize, &built[3]), (4, &built[4])] {
            let mut z = env.open(a).await;
            let csv_name = "Alexa.VoiceHistory/Alexa.VoiceHistory.csv";
            let body = text(&mut z, csv_name);
            let mut rdr = csv::ReaderBuilder::new().from_reader(&body[3..]);
            let col = rdr
                .headers()
                .unwrap()
                .iter()
                .position(|c| c == "AudioFile")
                .unwrap();
            let named = rdr
                .records()
                .filter(|r| !r.as_ref().unwrap()[col].is_empty())
                .count();
            assert!(named >= 1, "{era:?} {i}");
            assert_eq!(mp3(&z), named, "{era:?} {i}");
        }
    }
}

#[tokio::test]
async fn manifest_describes_the_archive() {
    let env = mem_env();
    let o = opts(Provider::Google, Format::Zip, 2, Era::Current);
    let dumps = env.dumps(&o).await;
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let options = BuildOptions {
        progress: Some(Arc::new(move |p| {
            assert!(p.bytes_read <= p.bytes_total, "{p:?}");
            c.fetch_add(1, Ordering::Relaxed);
        })),
        ..BuildOptions::default()
    };
    let built = env
        .try_build(
            &dumps,
            &["google.my_activity[time>=2021-01-01].{title,time,audioFiles}"],
            &options,
        )
        .await
        .unwrap();
    assert!(calls.load(Ordering::Relaxed) >= 1);
    let a = &built[0];
    assert_eq!(a.file, "google.my_activity.zip");
    let scope = "google.my_activity[time>=2021-01-01].{title,time,audioFiles}";
    assert_eq!(a.scope_display, Scope::parse(scope).unwrap().display());
    let mut z = env.open(a).await;
    let m = json(&mut z, "manifest.json");
    assert_eq!(m["scope"]["provider"], "google");
    assert_eq!(m["scope"]["path"], "my_activity");
    assert_eq!(m["scope_display"], a.scope_display);
    let sources = m["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0]["name"], dumps[0].name);
    assert_eq!(
        sources[0]["blake2b"],
        protocol::anychain::b64u_encode(&dumps[0].blake2b)
    );
    let paths: Vec<&str> = m["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "my_activity.search",
            "my_activity.assistant",
            "my_activity.youtube"
        ]
    );
    assert!(m["paths"][0]["description"].as_str().unwrap().len() > 10);
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len() as u64, a.files);
    let total: u64 = files.iter().filter_map(|f| f["records"].as_u64()).sum();
    assert_eq!(total, a.records);
    assert_eq!(m["records"], a.records);
    for f in files {
        let name = f["path"].as_str().unwrap();
        assert_eq!(
            text(&mut z, name).len() as u64,
            f["size"].as_u64().unwrap(),
            "{name}"
        );
        if name.ends_with(".json") {
            assert_eq!(
                json(&mut z, name).as_array().unwrap().len() as u64,
                f["records"].as_u64().unwrap()
            );
        }
    }
    assert!(m["skipped"].as_array().unwrap().is_empty());
}
