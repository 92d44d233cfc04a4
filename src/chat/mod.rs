//! Chat sessions and prompt templates.
