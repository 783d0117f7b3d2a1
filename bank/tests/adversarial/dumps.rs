//! Attacks: dumps (filled in below).
