//! End-to-end tests of Milestone live in `e2e/`: they start `command-api`, `projector` and
//! `query-api` as separate processes against one fresh PostgreSQL database and talk to them
//! over HTTP only.

#![forbid(unsafe_code)]
