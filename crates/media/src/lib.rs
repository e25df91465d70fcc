//! Media customers send and concierges see: what the bytes are (`sniff`), where they are
//! kept (`store`, in a `folder`), and the smaller copies the LLM and the console get
//! (`picture`).

mod config;
mod error;
mod folder;
mod picture;
mod sniff;
mod store;

pub use config::MediaConfig;
pub use error::MediaError;
pub use picture::{LLM_LONG_SIDE, THUMB_LONG_SIDE};
pub use sniff::{Sniffed, sniff};
pub use store::{MediaStore, Variant};
