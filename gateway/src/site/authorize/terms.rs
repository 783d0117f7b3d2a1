//! The contract as the consent page shows it: its scopes grouped by legal
//! basis and described from the catalog, its legal terms in words.

use super::{refuse, Refusal};
use crate::site::catalog::{describe, Described};
use protocol::alias::{Basis, Contract};
use protocol::anychain::{to_token, Value};
use protocol::catalog::Catalog;

/// A scope as the page shows it.
pub struct ScopeView {
    /// Described scope.
    pub d: Described,
    /// Group index.
    pub group: usize,
    /// Index in the group.
    pub index: usize,
}

/// A group of scopes with its usages.
pub struct GroupView {
    /// What the client does with them.
    pub usages: String,
    /// The scopes.
    pub scopes: Vec<ScopeView>,
}

pub(super) fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Null => "—".into(),
        Value::List(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        Value::Dict(d) => d
            .iter()
            .map(|(k, v)| format!("{k}: {}", plain(v)))
            .collect::<Vec<_>>()
            .join("; "),
        other => to_token(other),
    }
}

fn usages(group: Option<&Value>) -> String {
    group
        .and_then(|g| g.get("usages"))
        .map(plain)
        .unwrap_or_default()
}

fn humanize(key: &str) -> String {
    let words = key.replace(['_', '-'], " ");
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().collect::<String>() + chars.as_str()
    })
}

/// The legal terms, usage and third parties first.
pub(super) fn legal_terms(contract: &Contract<'_>) -> Vec<(String, String)> {
    let Some(Value::Dict(legal)) = contract.legal() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let first = ["usage", "destination", "subprocessors", "third_parties"];
    for key in first {
        if let Some(v) = legal.get(key) {
            let label = match key {
                "usage" => "Usage".to_owned(),
                "destination" | "third_parties" => "Third parties receiving the data".to_owned(),
                _ => "Subprocessors".to_owned(),
            };
            out.push((label, plain(v)));
        }
    }
    for (k, v) in legal.iter() {
        if !first.contains(&k) {
            out.push((humanize(k), plain(v)));
        }
    }
    out
}

/// Escapes JSON for a `<script type="application/json">` element.
pub fn script_json(text: &str) -> String {
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

pub(super) fn contract_groups(
    catalog: &Catalog,
    contract: &Contract<'_>,
) -> Result<(GroupView, Vec<GroupView>, Vec<GroupView>), Refusal> {
    let entries = contract
        .scope_entries()
        .map_err(|e| refuse(format!("the contract's scopes cannot be read: {e}")))?;
    let base = contract.base();
    let mut contractual = GroupView {
        usages: usages(base.and_then(|b| b.get("contractual"))),
        scopes: Vec::new(),
    };
    let consent_groups = base.and_then(|b| b.get("consent")).and_then(Value::as_list);
    let legit_groups = base
        .and_then(|b| b.get("legitimate"))
        .and_then(|l| l.get("groups"))
        .and_then(Value::as_list);
    let mk = |list: Option<&[Value]>| -> Vec<GroupView> {
        list.map(|l| {
            l.iter()
                .map(|g| GroupView {
                    usages: usages(Some(g)),
                    scopes: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let mut consent = mk(consent_groups);
    let mut legitimate = mk(legit_groups);
    for e in entries {
        let view = ScopeView {
            d: describe(catalog, e.scope),
            group: e.group,
            index: e.index,
        };
        match e.basis {
            Basis::Contractual => contractual.scopes.push(view),
            Basis::Consent => {
                if let Some(g) = consent.get_mut(e.group) {
                    g.scopes.push(view);
                }
            }
            Basis::Legitimate => {
                if let Some(g) = legitimate.get_mut(e.group) {
                    g.scopes.push(view);
                }
            }
        }
    }
    Ok((contractual, consent, legitimate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_the_script() {
        assert_eq!(script_json("</script>"), "\\u003c/script\\u003e");
    }
}
