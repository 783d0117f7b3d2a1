//! Protocol core of alias-bank.
//!
//! * [`anychain`] — the anychain value model, its JSON form and tokens, the
//!   fold (BLAKE2b-512 merkle hash, reference quirks included), ed25519
//!   signatures and the validator registry.
//! * [`alias`] — the Alias documents (client declaration, contract, grant,
//!   bindAuthz, revocation), their validators, hashes, scopes and push URLs.
//! * [`scope`] — scopes: the object form, the string grammar, predicates and
//!   field projection of JSON records.
//! * [`js`] — the few JavaScript semantics the reference relies on
//!   (truthiness, loose equality, relational comparison, number formatting).

pub mod alias;
pub mod anychain;
pub mod js;
pub mod scope;
