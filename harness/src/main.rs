//! `harness`: the command users run on their machines. See `harness --help`.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "Measure livepatch-style dispatch strategies under concurrent transitions")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every strategy in the registry: name, consistency, description.
    List,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::List) => print!("{}", harness::list()),
        None => {
            eprintln!("harness: no default suite yet; `harness list` shows the strategies");
            std::process::exit(2);
        }
    }
}
