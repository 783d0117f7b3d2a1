//! `alias-processor`: configuration from `ALIAS_*` variables, then the library.

fn main() -> std::process::ExitCode {
    runtime::telemetry::init();
    let config = match runtime::config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("alias-processor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let system = actix::System::new();
    match system.block_on(processor::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alias-processor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
