//! Attacks: isolation (filled in below).
