//! The Alias protocol, as alias-bank speaks it. This crate does no I/O: the
//! sink, `aliasctl` and the web module's test vectors need nothing else.
//!
//! * [`anychain`] — the anychain value model, its JSON form and tokens, the
//!   fold (BLAKE2b-512 merkle hash, reference quirks included), ed25519
//!   signatures and the validator registry.
//! * [`alias`] — the Alias documents (client declaration, contract, grant,
//!   bindAuthz, revocation), their validators, hashes, scopes and push URLs.
//! * [`scope`] — scopes: the object form, the string grammar, predicates and
//!   field projection of JSON records.
//! * [`catalog`] — the provider catalogs: which files of an export make up
//!   each scope path, how their records are read, and how people read them.
//! * [`wire`] — the push protocol on the wire (headers, ranges, finish
//!   bodies) and the error envelope, for the bank and its clients alike.
//! * [`date`] — the proleptic Gregorian calendar: day counts, ISO 8601 /
//!   RFC 3339 instants, HTTP dates.
//! * [`js`] — the few JavaScript semantics the reference relies on
//!   (truthiness, loose equality, relational comparison, number formatting).

pub mod alias;
pub mod anychain;
pub mod catalog;
pub mod date;
pub mod js;
pub mod scope;
pub mod wire;
