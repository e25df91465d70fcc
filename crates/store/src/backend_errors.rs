//! The backends' own errors as `StoreError`s, so a backend writes `?`. They live here, with
//! `StoreError`, because only its crate may implement `From` for it; each backend turns on
//! its feature.

#[cfg(any(feature = "redis", feature = "sqlite"))]
use crate::StoreError;

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    /// A constraint SQLite refused is a conflict; anything else the backend failing.
    fn from(e: rusqlite::Error) -> Self {
        let what = e.to_string();
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
            StoreError::Conflict {
                what,
                cause: Some(Box::new(e)),
            }
        } else {
            StoreError::unavailable_by(what, e)
        }
    }
}

#[cfg(feature = "redis")]
impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::unavailable_by(format!("redis: {e}"), e)
    }
}
