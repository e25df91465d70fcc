//! Media customers send and concierges see: what the bytes are (`sniff`), where they are
//! kept (`store`, in a `folder` or a `bucket`), and the smaller copies the LLM and the console get
//! (`picture`); and voice notes put into words (`transcribe`).

mod bucket;
mod config;
mod error;
mod folder;
mod objects;
mod picture;
pub mod retention;
mod sniff;
mod store;
mod transcribe;

pub use bucket::BucketConfig;
pub use config::MediaConfig;
pub use error::MediaError;
pub use picture::{LLM_LONG_SIDE, THUMB_LONG_SIDE};
pub use sniff::{Sniffed, sniff};
pub use store::{MediaStore, Variant};
pub use transcribe::{MAX_TRANSCRIPT_CHARS, TranscribeError, Transcriber, TranscriptionConfig};
