//! The query API over HTTP, on read models filled the real way: commands decided and appended
//! through the event store, then the projector run.

mod helpers;

mod auth;
mod blue_green;
mod console;
mod limits;
mod orders;
mod read_model;
mod read_your_writes;
mod repair;
mod returns;
mod sdl;
mod subscriber;
mod subscriptions;
