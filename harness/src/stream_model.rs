//! The model the streamed checks ask for: a leaf, so that the stack and the
//! run state can name it without depending on [`crate::verify`], which
//! drives the stack.

/// A model of the deployed config served by the streaming mock, and the
/// ids the mock may receive for it.
#[derive(Debug, Clone)]
pub struct StreamModel {
    pub id: String,
    pub upstream_ids: Vec<String>,
}
