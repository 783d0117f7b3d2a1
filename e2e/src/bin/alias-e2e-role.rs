//! `alias-e2e-role ROLE`: one role of the data bank (`gateway`,
//! `processor` or `pusher`) on the `ALIAS_*` configuration of its
//! environment, until SIGTERM, as the role's own binary runs it. The whole-
//! bank tests start it as a child process to kill or stop it.

use e2e::Role;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(role) = std::env::args().nth(1).as_deref().and_then(Role::from_name) else {
        eprintln!("usage: alias-e2e-role gateway|processor|pusher");
        return ExitCode::from(2);
    };
    runtime::telemetry::init();
    let config = match runtime::config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("alias-e2e-role {}: {e}", role.as_str());
            return ExitCode::from(2);
        }
    };
    let system = actix::System::new();
    let ran = system.block_on(async move {
        match role {
            Role::Gateway => gateway::run(config).await,
            Role::Processor => processor::run(config).await,
            Role::Pusher => pusher::run(config).await,
        }
    });
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alias-e2e-role {}: {e:#}", role.as_str());
            ExitCode::FAILURE
        }
    }
}
