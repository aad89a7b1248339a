use clap::Parser;
use wib_controller::{Settings, run, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    telemetry::init(settings.log_format);
    run(settings).await
}
