//! Archive file names: one per scope, safe as a path segment and unique
//! within a transfer.

use std::collections::HashSet;

/// Archive file names for scopes: `provider.path.zip` (`provider.all.zip`
/// for every path) in `[A-Za-z0-9._-]`; names that several scopes would
/// share get a short hash of the scope's display form, then a counter.
pub fn archive_names(scopes: &[protocol::scope::Scope]) -> Vec<String> {
    let base: Vec<String> = scopes
        .iter()
        .map(|s| {
            let path = if s.path.is_empty() {
                "all"
            } else {
                s.path.as_str()
            };
            let raw = format!("{}.{}", s.provider, path);
            let safe: String = raw
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .take(200)
                .collect();
            safe
        })
        .collect();
    let mut used = HashSet::new();
    let mut out = Vec::with_capacity(scopes.len());
    for (i, (b, s)) in base.iter().zip(scopes).enumerate() {
        let shared = base
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other == b);
        let mut name = if shared {
            let h = blake2b_simd::Params::new()
                .hash_length(4)
                .hash(s.display().as_bytes());
            let hex: String = h.as_bytes().iter().map(|x| format!("{x:02x}")).collect();
            format!("{b}-{hex}.zip")
        } else {
            format!("{b}.zip")
        };
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{}-{n}.zip", name.trim_end_matches(".zip"));
            n += 1;
        }
        out.push(name);
    }
    out
}
