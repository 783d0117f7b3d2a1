//! What the consent page says first: who asks for what, where it goes and
//! for how long, in one paragraph; and the warnings that apply.

use super::terms::{plain, GroupView, ScopeView};
use crate::site::catalog::Described;
use protocol::alias::Contract;

/// A warning of the consent page: a short headline and its explanation.
pub struct Warning {
    /// Stable id (`all-data`, `plain-http`, `indefinite`, `legitimate`,
    /// `no-dump`), for styling and tests.
    pub kind: &'static str,
    /// What it is, in a few words.
    pub title: String,
    /// What it means for the user.
    pub text: String,
}

/// Words of a `storage_duration` that mean "no limit".
fn indefinite(duration: Option<&str>) -> bool {
    let Some(d) = duration.map(|d| d.trim().to_lowercase()) else {
        return true;
    };
    d.is_empty()
        || [
            "indefinite",
            "unlimited",
            "forever",
            "permanent",
            "no limit",
            "unknown",
            "not specified",
            "as long as",
        ]
        .iter()
        .any(|w| d.contains(w))
}

/// "a, b and c".
pub(super) fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Lower-cases the first letter (a catalog description inside a sentence).
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_lowercase().collect::<String>() + chars.as_str()
    })
}

/// The short name of a provider (`Facebook` of `Facebook — Download your
/// information`).
fn short_provider(name: &str) -> &str {
    name.split(" — ").next().unwrap_or(name).trim()
}

/// A scope in a few words, inside a sentence: the catalog description up
/// to its first detail (`your Google searches and the search results you
/// opened`), or "everything of your Google Takeout".
fn short_description(d: &Described) -> String {
    if d.all {
        return format!("everything of your {}", short_provider(&d.provider));
    }
    let text = d.description.trim_end_matches('.');
    let cut = [", with", " (", ": ", "; ", ". "]
        .iter()
        .filter_map(|sep| text.find(sep))
        .min()
        .unwrap_or(text.len());
    lower_first(text.get(..cut).unwrap_or(text).trim())
}

/// What the consent page says first: who asks for what, where it goes and
/// for how long, in one paragraph; and the warnings that apply.
pub(super) struct Summary {
    /// The paragraph.
    pub(super) text: String,
    /// The warnings that apply.
    pub(super) warnings: Vec<Warning>,
    /// Where the data is pushed (`scheme://host[:port]`).
    pub(super) push_target: String,
}

pub(super) fn summarize(
    contract: &Contract<'_>,
    client_name: &str,
    groups: (&GroupView, &[GroupView], &[GroupView]),
    dump_providers: &[String],
) -> Summary {
    let (contractual, consent, legitimate) = groups;
    let name_of = |v: &ScopeView| short_description(&v.d);
    let required: Vec<String> = contractual.scopes.iter().map(name_of).collect();
    let optional: Vec<String> = consent
        .iter()
        .flat_map(|g| g.scopes.iter().map(name_of))
        .collect();
    let legit: Vec<String> = legitimate
        .iter()
        .flat_map(|g| g.scopes.iter().map(name_of))
        .collect();
    let push = contract.push_base().ok();
    let push_target = push.as_ref().map_or_else(String::new, |p| {
        p.port().map_or_else(
            || format!("{}://{}", p.scheme(), p.host()),
            |port| format!("{}://{}:{port}", p.scheme(), p.host()),
        )
    });
    let legal = contract.legal();
    let legal_text = |key: &str| legal.and_then(|l| l.get(key)).map(plain);
    let duration = legal_text("storage_duration");
    let usage = legal_text("usage");
    let mut what = required.clone();
    what.extend(legit.iter().cloned());
    let them = if optional.len() == 1 { "it" } else { "them" };
    let asked = match (what.is_empty(), optional.is_empty()) {
        (true, true) => "no data at all (the request names none)".to_owned(),
        (true, false) => format!("only what you switch on below: {}", and_list(&optional)),
        (false, true) => and_list(&what),
        (false, false) => format!(
            "{}, and, only if you switch {them} on, {}",
            and_list(&what),
            and_list(&optional)
        ),
    };
    let mut text = format!("“{client_name}” asks to receive {asked}");
    text.push('.');
    if let Some(u) = usage.filter(|u| !u.is_empty()) {
        text.push_str(&format!(" It says it uses them for: {u}."));
    }
    if let Some(p) = &push {
        text.push_str(&format!(" The data is sent to {}", p.host()));
        if p.scheme() == "http" {
            text.push_str(" without encryption");
        }
        text.push('.');
    }
    match duration.as_deref() {
        Some(d) if !indefinite(Some(d)) => text.push_str(&format!(" It keeps it for {d}.")),
        _ => text.push_str(" It does not say for how long it keeps it."),
    }
    let mut warnings = Vec::new();
    let everything: Vec<String> = [contractual]
        .into_iter()
        .chain(consent.iter())
        .chain(legitimate.iter())
        .flat_map(|g| g.scopes.iter())
        .filter(|v| v.d.all)
        .map(|v| short_provider(&v.d.provider).to_owned())
        .collect();
    if !everything.is_empty() {
        warnings.push(Warning {
            kind: "all-data",
            title: "Everything of an export".into(),
            text: format!(
                "This asks for all of your {}: every message, search, photo and location it holds.",
                and_list(&everything)
            ),
        });
    }
    if push.as_ref().is_some_and(|p| p.scheme() == "http") {
        warnings.push(Warning {
            kind: "plain-http",
            title: "Sent without encryption".into(),
            text: "The client receives your data over plain http: anyone on the network path can read or change it.".into(),
        });
    }
    if indefinite(duration.as_deref()) {
        warnings.push(Warning {
            kind: "indefinite",
            title: "No time limit".into(),
            text: match duration.as_deref() {
                Some(d) if !d.trim().is_empty() => format!("The client keeps your data {d}."),
                _ => "The client does not say how long it keeps your data: assume indefinitely."
                    .into(),
            },
        });
    }
    if !legit.is_empty() {
        warnings.push(Warning {
            kind: "legitimate",
            title: "Shared without asking".into(),
            text: "Part of it would be shared on the client's “legitimate interest”, which does not need your consent. You can object to each of those below.".into(),
        });
    }
    let mut missing: Vec<String> = Vec::new();
    for v in [contractual]
        .into_iter()
        .chain(consent.iter())
        .chain(legitimate.iter())
        .flat_map(|g| g.scopes.iter())
    {
        if !v.d.provider_id.is_empty()
            && !dump_providers.contains(&v.d.provider_id)
            && !missing.iter().any(|m| m == short_provider(&v.d.provider))
        {
            missing.push(short_provider(&v.d.provider).to_owned());
        }
    }
    if !missing.is_empty() {
        warnings.push(Warning {
            kind: "no-dump",
            title: "No export uploaded".into(),
            text: format!(
                "You have no {} export here yet: nothing of it is sent until you upload one.",
                and_list(&missing)
            ),
        });
    }
    Summary {
        text,
        warnings,
        push_target,
    }
}
