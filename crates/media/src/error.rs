//! What can go wrong with media, in words a concierge can read.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A kind of file the gateway does not keep (executables, web pages, SVG, archives).
    #[error("files of this kind are not kept ({0})")]
    NotAllowed(String),
    /// The bytes do not read as what they are (an image that does not decode).
    #[error("the file could not be read ({0})")]
    Unreadable(String),
    /// The media folder (or bucket) failed.
    #[error("the media store failed: {0}")]
    Store(String),
}

impl From<std::io::Error> for MediaError {
    fn from(e: std::io::Error) -> Self {
        MediaError::Store(e.to_string())
    }
}
