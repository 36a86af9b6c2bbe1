// The ingest's pure parsers, from the crate's sources (see pure.rs).
#[path = "../../../src/ingest/dict_literal.rs"]
pub mod dict_literal;
#[path = "../../../src/ingest/ids.rs"]
pub mod ids;
#[path = "../../../src/ingest/requests.rs"]
pub mod requests;
