//! Attacks: visibility (filled in below).
