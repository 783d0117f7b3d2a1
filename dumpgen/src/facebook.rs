//! Facebook "Download your information", JSON (EXPORTS.md §2).

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::gen::{MediaKind, Planned};
use crate::util::{digits, json_text, pick, sub_seed, words, JsonStyle, NAMES};
use crate::{Ctx, Era};

const F: JsonStyle = JsonStyle::Facebook;
const ME: &str = "Jo Exämple";

/// Folders of one era.
struct Layout {
    posts: &'static str,
    posts_file: &'static str,
    post_media: &'static str,
    album_dir: &'static str,
    album_media: &'static str,
    comments: &'static str,
    comments_key: &'static str,
    reactions: &'static str,
    reactions_key: Option<&'static str>,
    friends: &'static str,
    friends_key: &'static str,
    messages: &'static str,
    profile: &'static str,
    profile_key: &'static str,
}

const CURRENT: Layout = Layout {
    posts: "your_facebook_activity/posts",
    posts_file: "your_posts__check_ins__photos_and_videos_1.json",
    post_media: "your_facebook_activity/posts/media/Mobileuploads_12345",
    album_dir: "your_facebook_activity/posts/album",
    album_media: "your_facebook_activity/posts/media/Summer2021_98765",
    comments: "your_facebook_activity/comments_and_reactions/comments.json",
    comments_key: "comments_v2",
    reactions: "your_facebook_activity/comments_and_reactions/likes_and_reactions_1.json",
    reactions_key: None,
    friends: "connections/friends/your_friends.json",
    friends_key: "friends_v2",
    messages: "your_facebook_activity/messages/inbox",
    profile: "personal_information/profile_information/profile_information.json",
    profile_key: "profile_v2",
};

const LEGACY: Layout = Layout {
    posts: "posts",
    posts_file: "your_posts_1.json",
    post_media: "photos_and_videos/Mobileuploads_12345",
    album_dir: "photos_and_videos/album",
    album_media: "photos_and_videos/Summer2021_98765",
    comments: "comments/comments.json",
    comments_key: "comments",
    reactions: "likes_and_reactions/posts_and_comments.json",
    reactions_key: Some("reactions"),
    friends: "friends/friends.json",
    friends_key: "friends",
    messages: "messages/inbox",
    profile: "profile_information/profile_information.json",
    profile_key: "profile",
};

fn secs(t: i64) -> i64 {
    t.div_euclid(1000)
}

fn item(f: fn(&mut StdRng, u64, i64) -> Value, indent: usize) -> crate::gen::ItemFn {
    Arc::new(move |rng, i, t| json_text(&f(rng, i, t), F, indent))
}

fn text_post(rng: &mut StdRng, _i: u64, t: i64) -> Value {
    json!({"timestamp": secs(t), "data": [{"post": words(rng, 3, 14)}],
        "title": format!("{ME} updated their status.")})
}

fn comment(rng: &mut StdRng, _i: u64, t: i64) -> Value {
    let other = pick(rng, NAMES);
    json!({"timestamp": secs(t), "data": [{"comment": {"timestamp": secs(t), "comment": words(rng, 2, 10), "author": ME}}],
        "title": format!("{ME} commented on {other}'s post.")})
}

fn reaction(rng: &mut StdRng, _i: u64, t: i64) -> Value {
    let other = pick(rng, NAMES);
    let r = pick(
        rng,
        &["LIKE", "LIKE", "LOVE", "HAHA", "WOW", "SORRY", "SUPPORT"],
    );
    json!({"timestamp": secs(t), "data": [{"reaction": {"reaction": r, "actor": ME}}],
        "title": format!("{ME} reacted to {other}'s post.")})
}

fn friend(rng: &mut StdRng, i: u64, t: i64) -> Value {
    json!({"name": format!("{} {}", pick(rng, NAMES), i), "timestamp": secs(t)})
}

fn message(rng: &mut StdRng, _i: u64, t: i64) -> Value {
    let sender = if rng.gen_bool(0.5) { ME } else { "Sam Sample" };
    json!({"sender_name": sender, "timestamp_ms": t, "content": words(rng, 1, 12), "type": "Generic", "is_unsent": false})
}

pub(crate) fn plan(ctx: &Ctx) -> Vec<Planned> {
    let l = if ctx.era == Era::Legacy {
        &LEGACY
    } else {
        &CURRENT
    };
    let t = ctx.text_budget as f64;
    let share = |w: f64| (t * w) as u64;
    let m = ctx.media_budget as f64;
    let mut rng = StdRng::seed_from_u64(sub_seed(ctx.seed, "facebook"));
    let mut out = Vec::new();
    let pretty_array = |label: &str, budget: u64, presets: Vec<Vec<u8>>, f: crate::gen::ItemFn| {
        ctx.spec(
            label,
            budget,
            b"[\n  ".to_vec(),
            b",\n  ".to_vec(),
            b"\n]\n".to_vec(),
            presets,
            f,
            250,
        )
    };
    let wrapped =
        |label: &str, key: &str, budget: u64, presets: Vec<Vec<u8>>, f: crate::gen::ItemFn| {
            ctx.spec(
                label,
                budget,
                format!("{{\n  \"{key}\": [\n    ").into_bytes(),
                b",\n    ".to_vec(),
                b"\n  ]\n}\n".to_vec(),
                presets,
                f,
                250,
            )
        };

    // Posts with photos (§2.1).
    let n_post_media = ((m * 0.4 / 400_000.0) as u64).clamp(2, 5000);
    let post_media_size = ((m * 0.4 / n_post_media as f64) as u64).max(800);
    let mut presets = Vec::new();
    let mut when = ctx.export_ms - 86_400_000;
    for k in 0..n_post_media {
        when -= rng.gen_range(3_600_000..20 * 86_400_000);
        let id = 4700 + k;
        let uri = format!("{}/{id}.jpg", l.post_media);
        out.push(Planned::media(
            uri.clone(),
            MediaKind::Jpeg,
            post_media_size / 2 + rng.gen_range(0..post_media_size),
            sub_seed(ctx.seed, &uri),
        ));
        let v = json!({"timestamp": secs(when), "title": format!("{ME} added a new photo."),
            "data": [{"post": words(&mut rng, 2, 8)}],
            "attachments": [{"data": [{"media": {"uri": uri, "creation_timestamp": secs(when) - 20, "title": "Mobile uploads",
                "media_metadata": {"photo_metadata": {"exif_data": [{"taken_timestamp": secs(when) - 600}]}}}}]}]});
        presets.push(json_text(&v, F, 1));
    }
    let mut posts = pretty_array("posts", share(0.2), presets, item(text_post, 1));
    posts.t_end = when - 3_600_000;
    out.push(Planned::stream(
        format!("{}/{}", l.posts, l.posts_file),
        posts,
    ));

    // Albums (§2.6).
    let n_album = ((m * 0.3 / 400_000.0) as u64).clamp(2, 5000);
    let album_size = ((m * 0.3 / n_album as f64) as u64).max(800);
    let mut photos = Vec::new();
    let mut when = ctx.export_ms - 5 * 86_400_000;
    for k in 0..n_album {
        when -= rng.gen_range(3_600_000..30 * 86_400_000);
        let uri = format!("{}/{}.jpg", l.album_media, 1000 + k);
        out.push(Planned::media(
            uri.clone(),
            MediaKind::Jpeg,
            album_size / 2 + rng.gen_range(0..album_size),
            sub_seed(ctx.seed, &uri),
        ));
        photos.push(json!({"uri": uri, "creation_timestamp": secs(when),
            "media_metadata": {"photo_metadata": {"exif_data": [{"taken_timestamp": secs(when) - 86_400, "camera_make": "Pixel"}]}},
            "title": "Summer 2021", "description": words(&mut rng, 1, 5)}));
    }
    let album = json!({"name": "Summer 2021", "photos": photos, "cover_photo": {"uri": format!("{}/1000.jpg", l.album_media), "creation_timestamp": secs(ctx.export_ms - 5 * 86_400_000)},
        "last_modified_timestamp": secs(ctx.export_ms - 86_400_000), "description": "Lake day – très belle journée"});
    out.push(Planned::bytes(
        format!("{}/0.json", l.album_dir),
        json_text(&album, F, 0),
    ));

    // Comments, reactions, friends (§2.2–2.4).
    out.push(Planned::stream(
        l.comments,
        wrapped(
            "comments",
            l.comments_key,
            share(0.15),
            Vec::new(),
            item(comment, 2),
        ),
    ));
    let reactions = match l.reactions_key {
        Some(key) => wrapped("reactions", key, share(0.15), Vec::new(), item(reaction, 2)),
        None => pretty_array("reactions", share(0.15), Vec::new(), item(reaction, 1)),
    };
    out.push(Planned::stream(l.reactions, reactions));
    out.push(Planned::stream(
        l.friends,
        wrapped(
            "friends",
            l.friends_key,
            share(0.05),
            Vec::new(),
            item(friend, 2),
        ),
    ));

    // Messages (§2.5): one thread with photos, one long text thread.
    let n_msg_media = ((m * 0.3 / 300_000.0) as u64).clamp(1, 5000);
    let msg_size = ((m * 0.3 / n_msg_media as f64) as u64).max(800);
    let thread = "samsample_abc123";
    let mut presets = Vec::new();
    let mut when = ctx.export_ms - 3 * 86_400_000;
    for k in 0..n_msg_media {
        when -= rng.gen_range(60_000..5 * 86_400_000);
        let uri = format!("{}/{thread}/photos/{}.jpg", l.messages, 9000 + k);
        out.push(Planned::media(
            uri.clone(),
            MediaKind::Jpeg,
            msg_size / 2 + rng.gen_range(0..msg_size),
            sub_seed(ctx.seed, &uri),
        ));
        let v = json!({"sender_name": "Sam Sample", "timestamp_ms": when, "type": "Generic", "is_unsent": false,
            "photos": [{"uri": uri, "creation_timestamp": secs(when) - 10}],
            "reactions": [{"reaction": "\u{2764}", "actor": ME}]});
        presets.push(json_text(&v, F, 2));
    }
    let thread_path = l.messages.rsplit('/').next().unwrap_or("inbox");
    for (name, title, presets, budget) in [
        (thread, "Sam Sample", presets, share(0.05)),
        (
            "zoeplaceholder_def456",
            "Zoë Placeholder",
            Vec::new(),
            share(0.3),
        ),
    ] {
        let prefix = format!(
            "{{\n  \"participants\": [\n    {{\n      \"name\": \"{}\"\n    }},\n    {{\n      \"name\": \"{}\"\n    }}\n  ],\n  \"messages\": [\n    ",
            mojibake(title),
            mojibake(ME)
        );
        let suffix = format!(
            "\n  ],\n  \"title\": \"{}\",\n  \"is_still_participant\": true,\n  \"thread_path\": \"{thread_path}/{name}\",\n  \"magic_words\": []\n}}\n",
            mojibake(title)
        );
        let mut spec = ctx.spec(
            &format!("thread-{name}"),
            budget,
            prefix.into_bytes(),
            b",\n    ".to_vec(),
            suffix.into_bytes(),
            presets,
            item(message, 2),
            150,
        );
        spec.t_end = when - 60_000;
        out.push(Planned::stream(
            format!("{}/{name}/message_1.json", l.messages),
            spec,
        ));
    }

    // Profile (§2.7).
    let profile = json!({l.profile_key: {
        "name": {"full_name": ME, "first_name": "Jo", "middle_name": "", "last_name": "Exämple"},
        "emails": {"emails": ["jo@example.org"], "previous_emails": [], "pending_emails": [], "ad_account_emails": []},
        "birthday": {"year": 1990, "month": 4, "day": 2}, "gender": {"gender_option": "FEMALE", "pronoun": "SHE"},
        "current_city": {"name": "Zürich, Switzerland", "timestamp": 1_500_000_000},
        "hometown": {"name": "Genève, Switzerland", "timestamp": 1_400_000_000},
        "phone_numbers": [{"phone_type": "Mobile", "phone_number": format!("+4179{}", digits(&mut rng, 7)), "verified": true}],
        "username": "jo.example", "registration_timestamp": 1_199_145_600,
        "profile_uri": "https://www.facebook.com/jo.example"}});
    out.push(Planned::bytes(l.profile, json_text(&profile, F, 0)));

    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// A string as Facebook escapes it (for hand-written JSON text).
fn mojibake(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if ch.is_ascii() {
            out.push(ch);
        } else {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\u00{b:02x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn mojibake_escapes_bytes() {
        assert_eq!(super::mojibake("Zoë"), "Zo\\u00c3\\u00ab");
    }
}
