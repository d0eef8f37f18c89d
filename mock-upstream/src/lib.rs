//! A mock LLM upstream.
