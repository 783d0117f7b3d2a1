//! `alias-gateway`: configuration from `ALIAS_*` variables, then the library.

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    runtime::telemetry::init();
    let config = match runtime::config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("alias-gateway: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match gateway::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alias-gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
