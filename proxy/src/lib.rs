//! goproxy: an LLM reverse proxy.
