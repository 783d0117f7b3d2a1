use super::*;
use crate::extract::catalog::ProviderCatalog;
use protocol::scope::Scope;

fn words() -> ActivityHtmlWords {
    let en = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec";
    ActivityHtmlWords {
        months: vec![en.split(' ').map(str::to_owned).collect()],
        products: vec!["Products:".into()],
        locations: vec!["Locations:".into()],
        details: vec!["Details:".into()],
    }
}

/// A page laid out as Google writes it (EXPORTS.md §1.1; GTP's fixtures).
const PAGE: &str = concat!(
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>My Activity</title>",
    "<style>.outer-cell{color:red} /* <div class=\"outer-cell\"> */</style>",
    "<script>var x = '<div class=\"outer-cell\">';</script></head><body>",
    "<div class=\"mdl-grid\">",
    "<div class=\"outer-cell mdl-cell mdl-cell--12-col mdl-shadow--2dp\"><div class=\"mdl-grid\">",
    "<div class=\"header-cell mdl-cell mdl-cell--12-col\"><p class=\"mdl-typography--title\">YouTube<br></p></div>",
    "<div class=\"content-cell mdl-cell mdl-cell--6-col mdl-typography--body-1\">Watched&nbsp;<a href=\"https://www.youtube.com/watch?v=AbC&amp;t=1\">Fish &amp; chips \u{a0}review</a><br>",
    "<a href=\"https://www.youtube.com/channel/UCx\">Backyard Builds</a><br>Jun 23, 2015, 2:43:45 PM</div>",
    "<div class=\"content-cell mdl-cell mdl-cell--6-col mdl-typography--body-1 mdl-typography--text-right\"></div>",
    "<div class=\"content-cell mdl-cell mdl-cell--12-col mdl-typography--caption\"><b>Products:</b><br>&emsp;YouTube<br>",
    "<b>Details:</b><br>&emsp;From Google Ads<br>",
    "<b>Why is this here?</b><br>&emsp;This activity was saved to your Google Account because the following settings were on:&nbsp;YouTube watch history.<br></div>",
    "</div></div>",
    "<div class=\"outer-cell mdl-cell mdl-cell--12-col mdl-shadow--2dp\"><div class=\"mdl-grid\">",
    "<div class=\"header-cell mdl-cell mdl-cell--12-col\"><p class=\"mdl-typography--title\">Search<br></p></div>",
    "<div class=\"content-cell mdl-cell mdl-cell--6-col mdl-typography--body-1\">Searched for&nbsp;<a href=\"https://www.google.com/search?q=caf%C3%A9\">caf\u{e9} &lt;near&gt; me</a><br>Aug 25, 2020, 5:06:44\u{202f}PM PDT</div>",
    "<div class=\"content-cell mdl-cell mdl-cell--12-col mdl-typography--caption\"><b>Products:</b><br>&emsp;Search<br>",
    "<b>Locations:</b><br>&emsp;At <a href=\"https://www.google.com/maps/@?api=1&amp;map_action=map&amp;center=3,-18\">this general area</a> - From <a href=\"https://support.google.com/maps/answer/1\">your places</a> (Home)<br></div>",
    "</div></div>",
    "<div class=\"outer-cell mdl-cell\"><div class=\"mdl-grid\">",
    "<div class=\"content-cell mdl-typography--body-1\">Visited example.org<br>Jan 22, 2020, 8:34:00 PM UTC<br></div>",
    "</div></div>",
    "</div></body></html>"
);

fn read(input: impl Read, max: usize) -> Result<Vec<Json>, RecError> {
    let mut out = Vec::new();
    activities(input, &words(), max, |r| {
        out.push(Json::Object(r));
        Ok(())
    })?;
    Ok(out)
}

fn expected() -> Vec<Json> {
    vec![
        json!({"header":"YouTube","title":"Watched Fish & chips  review",
            "titleUrl":"https://www.youtube.com/watch?v=AbC&t=1",
            "subtitles":[{"name":"Backyard Builds","url":"https://www.youtube.com/channel/UCx"}],
            "time":"2015-06-23T14:43:45Z","products":["YouTube"],
            "details":[{"name":"From Google Ads"}]}),
        json!({"header":"Search","title":"Searched for café <near> me",
            "titleUrl":"https://www.google.com/search?q=caf%C3%A9",
            "time":"2020-08-26T00:06:44Z","products":["Search"],
            "locationInfos":[{"name":"At this general area",
                "url":"https://www.google.com/maps/@?api=1&map_action=map&center=3,-18",
                "source":"From your places (Home)",
                "sourceUrl":"https://support.google.com/maps/answer/1"}]}),
        json!({"title":"Visited example.org","time":"2020-01-22T20:34:00Z"}),
    ]
}

#[test]
fn records_in_googles_json_shape() {
    let got = read(PAGE.as_bytes(), 1 << 20).unwrap();
    assert_eq!(got, expected());
    // Key order is Google's.
    let keys: Vec<&String> = got[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "header",
            "title",
            "titleUrl",
            "subtitles",
            "time",
            "products",
            "details"
        ]
    );
}

/// Hands out a few bytes at a time, cutting characters and tags.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn any_cut_of_the_stream_gives_the_same_records() {
    for step in [1, 2, 3, 7, 100] {
        let got = read(Trickle(PAGE.as_bytes(), step), 1 << 20).unwrap();
        assert_eq!(got, expected(), "step {step}");
    }
}

#[test]
fn what_cannot_be_read_is_a_format_error() {
    let bad_date = PAGE.replace("Jun 23, 2015, 2:43:45 PM", "23. Juni 2015 um 14:43:45");
    match read(bad_date.as_bytes(), 1 << 20) {
        Err(RecError::Format(m)) => assert!(m.contains("23. Juni 2015"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut latin1 = PAGE.as_bytes().to_vec();
    latin1.extend_from_slice(b"\xe9\xe9 <div>");
    assert!(matches!(
        read(latin1.as_slice(), 1 << 20),
        Err(RecError::Format(m)) if m.contains("UTF-8")
    ));
    // A record past the bound.
    assert!(matches!(
        read(PAGE.as_bytes(), 100),
        Err(RecError::Format(m)) if m.contains("larger than 100")
    ));
    // A token that never ends (an attribute of 300 KiB) past the bound.
    let huge = format!("<div class=\"{}", "x".repeat(300 << 10));
    assert!(matches!(
        read(huge.as_bytes(), 100 << 10),
        Err(RecError::Format(m)) if m.contains("token longer")
    ));
    // Not a My Activity page at all: no records, no error.
    assert_eq!(
        read(&b"<p>hello</p>"[..], 1 << 20).unwrap(),
        Vec::<Json>::new()
    );
    // A body cell without a title.
    let no_title = "<div class=\"outer-cell\"><div class=\"content-cell mdl-typography--body-1\">Jun 23, 2015, 2:43:45 PM</div></div>";
    assert!(matches!(
        read(no_title.as_bytes(), 1 << 20),
        Err(RecError::Format(m)) if m.contains("no title")
    ));
}

fn google_rule() -> (ProviderCatalog, usize) {
    let cat = crate::extract::Catalog::embedded().unwrap();
    let g = cat.provider("google").unwrap().clone();
    let p = g
        .paths
        .iter()
        .position(|p| p.id == "my_activity.search")
        .unwrap();
    (g, p)
}

#[test]
fn filtered_and_projected_as_the_json_form() {
    let (g, p) = google_rule();
    let path = &g.paths[p];
    let (_, rule) = path
        .rule_for("Takeout/My Activity/Search/MyActivity.html")
        .unwrap();
    assert_eq!(rule.format, crate::extract::RecordFormat::ActivityHtml);
    let scope = Scope::parse("google.my_activity.search[time>=2020-01-01].{title,time}").unwrap();
    let mut m = Matcher::new(
        &scope,
        rule,
        crate::extract::TextEncoding::Utf8,
        "Takeout/My Activity/Search/MyActivity.html",
        1 << 20,
    )
    .with_words(&g.activity_html);
    struct Out(Vec<u8>);
    impl crate::extract::records::Sink for Out {
        fn begin(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
            self.0.extend_from_slice(b);
            Ok(())
        }
    }
    let mut out = Out(Vec::new());
    let mut em = Emitter::new(Some(&mut out));
    filter(PAGE.as_bytes(), &g.activity_html, &mut m, &mut em).unwrap();
    assert_eq!(em.records, 2);
    let got: Json = serde_json::from_slice(&out.0).unwrap();
    // Only the granted fields: no header, URL, location or product.
    assert_eq!(
        got,
        json!([
            {"title":"Searched for café <near> me","time":"2020-08-26T00:06:44Z"},
            {"title":"Visited example.org","time":"2020-01-22T20:34:00Z"}
        ])
    );
}

#[test]
fn localised_names_match_json_and_html() {
    let (g, p) = google_rule();
    let path = &g.paths[p];
    for (name, html) in [
        ("Takeout/My Activity/Search/MyActivity.json", false),
        ("Takeout/My Activity/Search/MyActivity.html", true),
        (
            "Takeout/Meine Aktivitäten/Suche/MeineAktivitäten.html",
            true,
        ),
        (
            "Takeout/Meine Aktivitäten/Suche/MeineAktivitäten.json",
            false,
        ),
    ] {
        let (_, rule) = path.rule_for(name).unwrap();
        assert_eq!(rule.format.converted(), html, "{name}");
    }
    let watch = g.path("youtube.watch_history").unwrap();
    for name in [
        "Takeout/YouTube und YouTube Music/Verlauf/Wiedergabeverlauf.html",
        "Takeout/YouTube en YouTube Music/geschiedenis/kijkgeschiedenis.html",
        "Takeout/YouTube and YouTube Music/history/watch-history.html",
        "Takeout/YouTube/history/watch-history.json",
    ] {
        assert!(watch.rule_for(name).is_some(), "{name}");
    }
    assert!(watch
        .rule_for("Takeout/YouTube and YouTube Music/history/watch-history.txt")
        .is_none());
}
