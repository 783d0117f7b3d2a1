//! Human descriptions of scopes, from the provider catalogs the processor
//! builds archives with (`protocol::catalog`: the embedded catalogs, each
//! replaced or extended by `ALIAS_CATALOG_DIR`): what a user reads on the
//! consent page and the dashboard. The catalogs are the gateway's own
//! (`AppState::catalog`, loaded at start), so two gateways in one process
//! may describe scopes differently.

use protocol::anychain::Value;
use protocol::catalog::{Catalog, RecordFormat};
use protocol::scope::{Fields, Scope};

/// The display name of a provider (`Google Takeout`), or the name itself.
pub fn provider_name(catalog: &Catalog, provider: &str) -> String {
    catalog
        .provider(provider)
        .map_or_else(|| provider.to_owned(), |c| c.name.clone())
}

/// The providers of the catalogs, as `(provider, name)`.
pub fn providers(catalog: &Catalog) -> Vec<(String, String)> {
    catalog
        .providers()
        .map(|c| (c.provider.clone(), c.name.clone()))
        .collect()
}

/// A scope as a user reads it.
#[derive(Debug, Clone)]
pub struct Described {
    /// The provider's id (`google`), as dumps name it.
    pub provider_id: String,
    /// Whether the scope takes everything of the provider.
    pub all: bool,
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

/// Describes a scope value of a contract with the gateway's catalogs.
pub fn describe(catalog: &Catalog, value: &Value) -> Described {
    let Ok(scope) = Scope::from_value(value) else {
        return Described {
            provider_id: String::new(),
            all: false,
            provider: "?".into(),
            text: protocol::anychain::to_token(value),
            description: "A scope this data bank cannot read: it selects nothing.".into(),
            restrictions: String::new(),
            caveat: String::new(),
        };
    };
    let catalog = catalog.provider(&scope.provider);
    let description = match catalog {
        None => format!(
            "Data of {} (a provider this data bank does not know: nothing is exported).",
            scope.provider
        ),
        Some(c) if scope.all_paths() => format!("Everything of your {}: {}", c.name, c.description),
        Some(c) => {
            let parts: Vec<&str> = c
                .paths
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
            .map(|p| protocol::anychain::to_token(&p.to_value()))
            .collect();
        restrictions.push(format!("only records where {}", preds.join(" and ")));
    }
    if let Fields::Only(fields) = &scope.fields {
        restrictions.push(format!("only the fields {}", fields.join(", ")));
    }
    let mut caveats: Vec<String> = Vec::new();
    for p in catalog
        .iter()
        .flat_map(|c| c.paths.iter())
        .filter(|p| scope.selects_path(&p.id))
    {
        for r in p
            .files
            .iter()
            .filter(|r| r.format == RecordFormat::Unreadable)
        {
            if let Some(reason) = &r.reason {
                let text = format!("If {reason}.");
                if !caveats.contains(&text) {
                    caveats.push(text);
                }
            }
        }
    }
    Described {
        provider_id: scope.provider.clone(),
        all: scope.all_paths(),
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
    use protocol::anychain::Dict;

    #[test]
    fn catalogs_are_read_and_describe_scopes() {
        let catalog = Catalog::embedded().unwrap();
        assert_eq!(providers(&catalog).len(), 3);
        assert_eq!(provider_name(&catalog, "google"), "Google Takeout");
        assert_eq!(provider_name(&catalog, "nope"), "nope");
        let describe = |v: &Value| describe(&catalog, v);
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

    /// A catalog directory (`ALIAS_CATALOG_DIR`) changes what the pages say,
    /// as it changes what the processor builds: both load it the same way.
    #[test]
    fn catalog_dir_overrides_the_descriptions() {
        let dir = tempfile::tempdir().unwrap();
        let google = protocol::catalog::EMBEDDED
            .iter()
            .find(|(p, _)| *p == "google")
            .unwrap()
            .1
            .replace(
                "Google searches",
                "Searches typed into Google (local catalog)",
            );
        std::fs::write(dir.path().join("google.toml"), google).unwrap();
        let local = Catalog::load(Some(dir.path())).unwrap();
        let search = Value::Dict(
            Dict::new()
                .with("provider", "google")
                .with("path", "my_activity.search"),
        );
        let d = describe(&local, &search);
        assert!(
            d.description.contains("(local catalog)"),
            "{}",
            d.description
        );
        let embedded = describe(&Catalog::embedded().unwrap(), &search);
        assert!(!embedded.description.contains("(local catalog)"));
    }
}
