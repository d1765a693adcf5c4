//! `elevate list`: requests, newest first, a page at a time.

use crate::cli::CliError;
use crate::cli::output::Format;
use crate::cli::session::Session;
use crate::model::StateKind;
use crate::proto::v1 as pb;

/// List your requests, newest first.
#[derive(Debug, clap::Args)]
pub struct List {
    /// Only requests in this state.
    #[arg(long)]
    pub state: Option<String>,
    /// Everybody's requests (auditors and admins).
    #[arg(long)]
    pub all: bool,
    /// At most this many (up to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Only requests older than this id (the next page after it).
    #[arg(long, value_name = "ID")]
    pub before: Option<String>,
}

/// The wire value of a state word (`timed_out`), refused with the words there are.
fn state(word: &str) -> Result<pb::RequestState, CliError> {
    let kind = word.parse::<StateKind>().map_err(CliError::Usage)?;
    let name = format!("REQUEST_STATE_{}", kind.as_str().to_uppercase());
    pb::RequestState::from_str_name(&name)
        .ok_or_else(|| CliError::Usage(format!("the daemon's API has no state {word}")))
}

impl List {
    /// Lists one page; a table says how to get the next.
    pub async fn run(&self, session: &mut Session) -> Result<(), CliError> {
        let state = match &self.state {
            None => pb::RequestState::Unspecified,
            Some(word) => state(word)?,
        };
        let listed = session
            .clients
            .access
            .list_requests(pb::ListRequestsRequest {
                state: state.into(),
                all: self.all,
                limit: self.limit,
                page_token: self.before.clone().unwrap_or_default(),
            })
            .await?
            .into_inner();
        session.print_requests(&listed.requests);
        if !listed.next_page_token.is_empty() && session.output == Format::Table {
            eprintln!(
                "(the newest {} shown; more with --before {})",
                self.limit, listed.next_page_token
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_word_has_its_wire_value() {
        for kind in StateKind::ALL {
            let wire = state(kind.as_str()).unwrap();
            assert_ne!(wire, pb::RequestState::Unspecified, "{kind:?}");
            assert_eq!(
                crate::cli::output::state_word(wire.into()),
                kind.as_str(),
                "{kind:?}"
            );
        }
        assert!(matches!(state("granted"), Err(CliError::Usage(_))));
    }
}
