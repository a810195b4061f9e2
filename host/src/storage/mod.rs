//! Storage: the files a drill is kept in. The journal (one record per line, appended
//! under a lock), its archives, the checkpoint of the faults in effect, and what is
//! read back from them (history pages, the report). Built on the domain's records;
//! nothing here imports a layer above it.

pub(crate) mod active;
pub mod archive;
pub(crate) mod history;
pub mod journal;
pub(crate) mod owner;
pub(crate) mod report;
