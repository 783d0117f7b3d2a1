//! Attacks: consent (filled in below).
