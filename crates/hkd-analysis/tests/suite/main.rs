//! hkd-analysis's integration tests, one binary: each test executable links polars (about
//! 250 MB in a dev build), so five of them cost a gigabyte of disk and four extra links.

mod common;

mod analysis;
mod figure_rules;
mod figures;
mod legacy;
mod paired;
mod report;
