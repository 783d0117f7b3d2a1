//! Attacks: quotas (filled in below).
