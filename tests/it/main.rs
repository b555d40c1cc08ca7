//! racelab's integration tests, one crate so the library is linked once: each module is one
//! promise (README "Development"), sharing the harness in `common` and `tui_support`.

mod common;
mod tui_support;

mod bench;
mod cli;
mod cluster;
mod elle;
mod failover;
mod formats;
mod hostile;
mod html;
mod install;
mod properties;
mod safety;
mod scale;
mod scenarios;
mod schedules;
mod seed;
mod strategies;
mod tui_app;
mod tui_e2e;
mod tui_live;
mod tui_screens;
mod tui_step;
mod tui_widgets;
mod user;
mod workers;
mod wrong_fixes;
