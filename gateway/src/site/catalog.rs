//! Human descriptions of scopes, from the provider catalogs of the
//! processor (`processor/catalog/*.toml`, embedded at build time): what a
//! user reads on the consent page and the dashboard.

use common::anychain::Value;
use common::scope::{Fields, Scope};
use serde::Deserialize;
use std::sync::OnceLock;

const CATALOGS: [&str; 3] = [
    include_str!("../../../processor/catalog/google.toml"),
    include_str!("../../../processor/catalog/facebook.toml"),
    include_str!("../../../processor/catalog/amazon.toml"),
];

#[derive(Debug, Deserialize)]
struct Catalog {
    provider: String,
    name: String,
    description: String,
    #[serde(default)]
    path: Vec<CatalogPath>,
}

#[derive(Debug, Deserialize)]
struct CatalogPath {
    id: String,
    description: String,
    #[serde(default)]
    files: Vec<FileRule>,
}

/// What the consent page needs of a file rule: the forms the bank cannot
/// read, said before the user agrees.
#[derive(Debug, Deserialize)]
struct FileRule {
    format: String,
    #[serde(default)]
    reason: Option<String>,
}

fn catalogs() -> &'static [Catalog] {
    static CELL: OnceLock<Vec<Catalog>> = OnceLock::new();
    CELL.get_or_init(|| {
        CATALOGS
            .iter()
            .filter_map(|text| match toml::from_str::<Catalog>(text) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "provider catalog unreadable");
                    None
                }
            })
            .collect()
    })
}

/// The display name of a provider (`Google Takeout`), or the name itself.
pub fn provider_name(provider: &str) -> String {
    catalogs()
        .iter()
        .find(|c| c.provider == provider)
        .map_or_else(|| provider.to_owned(), |c| c.name.clone())
}

/// The providers of the catalogs, as `(provider, name)`.
pub fn providers() -> Vec<(String, String)> {
    catalogs()
        .iter()
        .map(|c| (c.provider.clone(), c.name.clone()))
        .collect()
}

/// A scope as a user reads it.
#[derive(Debug, Clone)]
pub struct Described {
    /// The provider's name.
    pub provider: String,
    /// The scope in the string grammar.
    pub text: String,
    /// What the data is, from the catalog.
    pub description: String,
    /// Restrictions (filters, fields), in words.
    pub restrictions: String,
    /// Forms of the data the bank cannot read (e.g. Facebook's HTML
    /// export), told before the user agrees; empty when none.
    pub caveat: String,
}

/// Describes a scope value of a contract.
pub fn describe(value: &Value) -> Described {
    let Ok(scope) = Scope::from_value(value) else {
        return Described {
            provider: "?".into(),
            text: common::anychain::to_token(value),
            description: "A scope this data bank cannot read: it selects nothing.".into(),
            restrictions: String::new(),
            caveat: String::new(),
        };
    };
    let catalog = catalogs().iter().find(|c| c.provider == scope.provider);
    let description = match catalog {
        None => format!(
            "Data of {} (a provider this data bank does not know: nothing is exported).",
            scope.provider
        ),
        Some(c) if scope.all_paths() => format!("Everything of your {}: {}", c.name, c.description),
        Some(c) => {
            let parts: Vec<&str> = c
                .path
                .iter()
                .filter(|p| scope.selects_path(&p.id))
                .map(|p| p.description.as_str())
                .collect();
            if parts.is_empty() {
                format!(
                    "{} (no such data in the {} catalog: nothing is exported).",
                    scope.path, c.name
                )
            } else {
                parts.join(" ")
            }
        }
    };
    let mut restrictions = Vec::new();
    if !scope.predicates.is_empty() {
        let preds: Vec<String> = scope
            .predicates
            .iter()
            .map(|p| common::anychain::to_token(&p.to_value()))
            .collect();
        restrictions.push(format!("only records where {}", preds.join(" and ")));
    }
    if let Fields::Only(fields) = &scope.fields {
        restrictions.push(format!("only the fields {}", fields.join(", ")));
    }
    let mut caveats: Vec<String> = Vec::new();
    for p in catalog
        .iter()
        .flat_map(|c| c.path.iter())
        .filter(|p| scope.selects_path(&p.id))
    {
        for r in p.files.iter().filter(|r| r.format == "unreadable") {
            if let Some(reason) = &r.reason {
                let text = format!("If {reason}.");
                if !caveats.contains(&text) {
                    caveats.push(text);
                }
            }
        }
    }
    Described {
        provider: catalog.map_or_else(|| scope.provider.clone(), |c| c.name.clone()),
        text: scope.display(),
        description,
        restrictions: restrictions.join("; "),
        caveat: caveats.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::anychain::Dict;

    #[test]
    fn catalogs_are_read_and_describe_scopes() {
        assert_eq!(catalogs().len(), 3);
        assert_eq!(provider_name("google"), "Google Takeout");
        let search = Value::Dict(
            Dict::new()
                .with("provider", "google")
                .with("path", "my_activity.search")
                .with("fields", Value::List(vec![Value::from("title")])),
        );
        let d = describe(&search);
        assert!(
            d.description.contains("Google searches"),
            "{}",
            d.description
        );
        assert_eq!(d.restrictions, "only the fields title");
        let all = describe(&Value::Dict(
            Dict::new().with("provider", "google").with("path", "*"),
        ));
        assert!(all
            .description
            .starts_with("Everything of your Google Takeout"));
        assert!(d.caveat.is_empty());
        let fb = describe(&Value::Dict(
            Dict::new()
                .with("provider", "facebook")
                .with("path", "posts"),
        ));
        assert!(
            fb.caveat.contains("request it again in JSON"),
            "{}",
            fb.caveat
        );
        let unknown = describe(&Value::Dict(
            Dict::new().with("provider", "nope").with("path", "x"),
        ));
        assert!(unknown.description.contains("does not know"));
    }
}
