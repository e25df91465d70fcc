//! The consent ledger on SQLite: one row a decision, a key recorded once.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use super::rows::corrupt;
use concierge_domain::{ChannelId, ContactId};
use concierge_store::{ConsentRecord, Consents, NewConsent, Purpose, StoreError};

#[async_trait]
impl Consents for SqliteStore {
    async fn record_consent(&self, consent: &NewConsent) -> Result<bool, StoreError> {
        let c = consent.clone();
        self.write(move |tx| {
            let added = tx.execute(
                "INSERT OR IGNORE INTO consent_ledger \
                 (channel_id, contact_id, purpose, granted, source, proof, at, key) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    c.channel.as_str(),
                    c.contact.as_str(),
                    c.purpose.name(),
                    c.granted,
                    c.source,
                    c.proof,
                    c.at,
                    c.key
                ],
            )?;
            Ok(added == 1)
        })
        .await
    }

    async fn consents(
        &self,
        channel: &ChannelId,
        contact: &ContactId,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        let (channel, contact) = (channel.clone(), contact.clone());
        self.read(move |conn| ledger(conn, &channel, &contact))
            .await
    }
}

/// A contact's ledger on a channel, oldest first, read on `conn` (a transaction's, when the
/// reader must see it as the write does).
pub(super) fn ledger(
    conn: &rusqlite::Connection,
    channel: &ChannelId,
    contact: &ContactId,
) -> Result<Vec<ConsentRecord>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, purpose, granted, source, proof, at, key FROM consent_ledger \
         WHERE channel_id = ?1 AND contact_id = ?2 ORDER BY seq",
    )?;
    let rows = statement.query_map(params![channel.as_str(), contact.as_str()], |row| {
        let purpose: String = row.get(1)?;
        Ok((
            row.get::<_, i64>(0)?,
            purpose,
            row.get::<_, bool>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, Option<String>>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, Option<String>>(6)?,
        ))
    })?;
    let mut records = Vec::new();
    for row in rows {
        let (seq, purpose, granted, source, proof, at, key) = row?;
        let purpose = Purpose::parse(&purpose)
            .ok_or_else(|| corrupt(format!("a consent purpose `{purpose}`")))?;
        records.push(ConsentRecord {
            seq,
            consent: NewConsent {
                channel: channel.clone(),
                contact: contact.clone(),
                purpose,
                granted,
                source,
                proof,
                at,
                key,
            },
        });
    }
    Ok(records)
}
