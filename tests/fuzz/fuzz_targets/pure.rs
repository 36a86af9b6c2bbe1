// The crate's pure modules, compiled from its own sources; `include!`d at the root of
// each fuzz target, so `crate::topology` resolves as it does in creditstream.
#[allow(dead_code)]
#[path = "../../../src/topology/mod.rs"]
mod topology;

#[allow(dead_code)]
mod ingest;
